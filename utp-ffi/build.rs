//! Gives the shared library a SONAME, so that programs linked with `-lutp`
//! record `libutp.so.0` and a future incompatible ABI can bump it.
//! (`libutp.so` itself stays the file `-lutp` finds at link time.)

fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" || target_os == "android" || target_os.ends_with("bsd") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libutp.so.0");
    }
    println!("cargo:rerun-if-changed=build.rs");
}

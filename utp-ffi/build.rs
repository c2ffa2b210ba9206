//! Gives the shared library a SONAME, so that programs linked with `-lutp`
//! record `libutp.so.0` and a future incompatible ABI can bump it.
//! (`libutp.so` itself stays the file `-lutp` finds at link time.)
//!
//! So that a program linked straight from the build directory
//! (`-L target/release -lutp`) finds `libutp.so.0` at run time, the build
//! directory also gets the link `libutp.so.0 -> libutp.so`, as an installed
//! library has (`scripts/install-c.sh` installs the real set).

use std::path::PathBuf;

fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" || target_os == "android" || target_os.ends_with("bsd") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libutp.so.0");
        soname_link();
    }
    println!("cargo:rerun-if-changed=build.rs");
}

/// `<target>/<profile>/libutp.so.0 -> libutp.so`. OUT_DIR is
/// `<target>/<profile>/build/utp-ffi-<hash>/out`.
fn soname_link() {
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return;
    };
    let Some(profile_dir) = out.ancestors().nth(3) else {
        return;
    };
    let link = profile_dir.join("libutp.so.0");
    if std::fs::symlink_metadata(&link).is_err() {
        // Best effort: a read-only or unusual target directory only costs
        // the convenience.
        let _ = std::os::unix::fs::symlink("libutp.so", &link);
    }
}

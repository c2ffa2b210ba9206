//! Builds and runs the C test programs of `tests/c/` against the static
//! library cargo just built (`libutp.a` next to the test binary), so
//! `cargo test -p utp-ffi` exercises the C ABI from C. Skipped (with a note)
//! when no C compiler is installed. `scripts/test-ffi.sh` runs the same
//! programs against the release build, under Valgrind.

use std::path::{Path, PathBuf};
use std::process::Command;

fn target_dir() -> PathBuf {
    // target/<profile>/deps/c_programs-<hash>  ->  target/<profile>
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

fn compiler(cxx: bool) -> Option<&'static str> {
    let name = if cxx { "g++" } else { "gcc" };
    Command::new(name)
        .arg("--version")
        .output()
        .ok()
        .map(|_| name)
}

/// `cargo test` links the crate into tests as an rlib only, so build the
/// static library explicitly (once per test binary run).
fn static_lib() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = target_dir();
            let profile_release = dir.file_name().is_some_and(|n| n == "release");
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args(["build", "--quiet", "-p", "utp-ffi", "--lib"]);
            if profile_release {
                cmd.arg("--release");
            }
            let status = cmd
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("run cargo build");
            assert!(status.success(), "cargo build -p utp-ffi failed");
            dir.join("libutp.a")
        })
        .clone()
}

fn build_and_run(src: &str, cxx: bool) {
    build_and_run_with(src, cxx, &[]);
}

fn build_and_run_with(src: &str, cxx: bool, args: &[&str]) {
    let Some(cc) = compiler(cxx) else {
        eprintln!("no C compiler: skipping {src}");
        return;
    };
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = static_lib();
    assert!(lib.exists(), "{} not built", lib.display());
    let out = std::env::temp_dir().join(format!(
        "utp-ffi-{}-{}{}",
        std::process::id(),
        Path::new(src).file_stem().unwrap().to_string_lossy(),
        if cxx { "-cxx" } else { "" }
    ));
    let mut cmd = Command::new(cc);
    if cxx {
        cmd.args(["-x", "c++", "-std=c++11"]);
    } else {
        cmd.args(["-x", "c", "-std=gnu11"]);
    }
    let status = cmd
        .args(["-Wall", "-Wextra", "-Werror", "-DPOSIX", "-I"])
        .arg(manifest.join("../include"))
        .arg(manifest.join("tests/c").join(src))
        .args(["-x", "none"])
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&out)
        .status()
        .expect("run the C compiler");
    assert!(status.success(), "compiling {src} failed");
    let run = Command::new(&out)
        .args(args)
        .output()
        .expect("run the C test");
    let _ = std::fs::remove_file(&out);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{src} failed:\n{stdout}\n{stderr}");
    println!("{src}: {}", stdout.trim());
}

#[test]
fn layout_as_c() {
    build_and_run("layout.c", false);
}

#[test]
fn layout_as_cxx() {
    build_and_run("layout.c", true);
}

#[test]
fn misuse_and_lifecycle() {
    build_and_run("misuse.c", false);
}

#[test]
fn threaded_api() {
    // 1 MB keeps `cargo test` quick; scripts/test-ffi.sh moves 5 MB.
    build_and_run_with("threaded.c", false, &["1000000"]);
}

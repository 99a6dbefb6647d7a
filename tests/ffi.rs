//! The C API from C: compiles the programs under `tests/c/` and
//! `examples/c/` with gcc against `include/dbrep.h` and the static library
//! this `cargo test` just built, and runs them.
//!
//! `.ci/run` runs the same C tests again under AddressSanitizer and
//! UndefinedBehaviorSanitizer.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding the libraries built with this test binary
/// (`target/<profile>/deps`: cargo builds every `[lib] crate-type` there).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .expect("test binary has a directory")
        .to_path_buf();
    assert!(
        dir.join("libdbrep.a").exists(),
        "no libdbrep.a beside the test binary in {}",
        dir.display()
    );
    dir
}

fn out_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ffi");
    std::fs::create_dir_all(&d).expect("create the output directory");
    d
}

/// Compiles C `sources` into an executable named `name`, statically linked
/// against dbrep; panics with gcc's output on failure.
fn build_c(name: &str, sources: &[&str], extra: &[&str]) -> PathBuf {
    let exe = out_dir().join(name);
    let mut cmd = Command::new("gcc");
    cmd.args([
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-Wpedantic",
        "-Werror",
        "-g",
    ])
    .arg("-D_DEFAULT_SOURCE")
    .arg(format!("-I{}", root().join("include").display()))
    .args(extra);
    for s in sources {
        cmd.arg(root().join(s));
    }
    cmd.arg(lib_dir().join("libdbrep.a"))
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&exe);
    let out = cmd.output().expect("run gcc (is it installed?)");
    assert!(
        out.status.success(),
        "gcc failed for {name}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

fn run_ok(exe: &Path, args: &[&str]) -> String {
    let out = Command::new(exe)
        .args(args)
        .output()
        .expect("run the C program");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        exe.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn header_compiles_as_strict_c_and_as_cpp() {
    let dir = out_dir();
    let c = dir.join("header_only.c");
    std::fs::write(
        &c,
        "#include \"dbrep.h\"\nint main(void) { return dbrep_strerror(0) == 0; }\n",
    )
    .unwrap();
    let inc = format!("-I{}", root().join("include").display());
    let st = Command::new("gcc")
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Wpedantic",
            "-Werror",
            "-c",
            &inc,
        ])
        .arg(&c)
        .arg("-o")
        .arg(dir.join("header_only.o"))
        .status()
        .expect("run gcc");
    assert!(st.success(), "the header does not compile as C11");
    let cpp = dir.join("header_only.cpp");
    std::fs::copy(&c, &cpp).unwrap();
    let st = Command::new("g++")
        .args(["-Wall", "-Wextra", "-Werror", "-c", &inc])
        .arg(&cpp)
        .arg("-o")
        .arg(dir.join("header_only_cpp.o"))
        .status()
        .expect("run g++");
    assert!(st.success(), "the header does not compile as C++");
}

#[test]
fn c_api_test_passes() {
    let exe = build_c("api_test", &["tests/c/api_test.c"], &[]);
    let out = run_ok(&exe, &[]);
    assert!(
        out.contains(" passed, 0 failed"),
        "unexpected output: {out}"
    );
}

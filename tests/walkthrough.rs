//! The README's first command, `cargo run --example master_switch`, runs
//! every step of the switching-masters walkthrough and exits 0.

use std::path::PathBuf;
use std::process::Command;

/// Builds an example with the cargo running this test and returns its path.
fn build_example(name: &str) -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--example", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build --example {name} failed");
    // This test runs from target/<profile>/deps; cargo build put the example
    // in target/debug/examples.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("debug").join("examples").join(name)
}

#[test]
fn master_switch_walkthrough_exits_zero() {
    let exe = build_example("master_switch");
    let out = Command::new(&exe).output().expect("run master_switch");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "master_switch failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for step in 1..=6 {
        assert!(
            stdout.contains(&format!("step {step}:")),
            "step {step} not narrated:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("every step happened as narrated"),
        "{stdout}"
    );
}

//! The C API from C: compiles the programs under `tests/c/` and
//! `examples/c/` with gcc against `include/dbrep.h` and the static library
//! this `cargo test` just built, and runs them.
//!
//! `.ci/run` runs the same C tests again under AddressSanitizer and
//! UndefinedBehaviorSanitizer.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

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
    build_c_with(name, sources, extra, Link::Static)
}

enum Link {
    Static,
    Shared,
}

fn build_c_with(name: &str, sources: &[&str], extra: &[&str], link: Link) -> PathBuf {
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
    let lib = lib_dir();
    match link {
        Link::Static => {
            cmd.arg(lib.join("libdbrep.a"));
        }
        Link::Shared => {
            assert!(
                lib.join("libdbrep.so").exists(),
                "no libdbrep.so in {}",
                lib.display()
            );
            cmd.arg(format!("-L{}", lib.display()))
                .arg("-ldbrep")
                .arg(format!("-Wl,-rpath,{}", lib.display()));
        }
    }
    cmd.args(["-lpthread", "-ldl", "-lm", "-o"]).arg(&exe);
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

fn run_c_test(name: &str) {
    let exe = build_c(name, &[&format!("tests/c/{name}.c")], &[]);
    let out = run_ok(&exe, &[]);
    assert!(out.contains(" passed, 0 failed"), "{name}: {out}");
}

#[test]
fn c_api_test_passes() {
    run_c_test("api_test");
}

#[test]
fn c_threads_test_passes() {
    run_c_test("threads_test");
}

#[test]
fn c_data_test_passes() {
    run_c_test("data_test");
}

#[test]
fn c_net_test_passes() {
    run_c_test("net_test");
}

/// Every function the header declares is called by a C test.
#[test]
fn every_exported_function_is_called_from_c() {
    let header = std::fs::read_to_string(root().join("include/dbrep.h")).unwrap();
    let mut c = String::new();
    for f in [
        "tests/c/api_test.c",
        "tests/c/threads_test.c",
        "tests/c/net_test.c",
        "tests/c/data_test.c",
    ] {
        c += &std::fs::read_to_string(root().join(f)).unwrap();
    }
    let mut names = Vec::new();
    for line in header.lines() {
        let line = line.trim_start();
        if line.starts_with("//") || line.starts_with('#') || line.starts_with("typedef") {
            continue;
        }
        if let Some(i) = line.find("dbrep_") {
            let rest = &line[i..];
            let end = rest.find('(').unwrap_or(0);
            let name = &rest[..end];
            if end > 0
                && name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
            {
                names.push(name.to_string());
            }
        }
    }
    assert!(
        names.len() > 40,
        "found only {} functions in the header",
        names.len()
    );
    let missing: Vec<_> = names
        .iter()
        .filter(|n| !c.contains(&format!("{n}(")))
        .collect();
    assert!(missing.is_empty(), "never called from C: {missing:?}");
}

#[test]
fn ex_rep_mem_elects_after_losing_the_master_static_and_shared() {
    for (name, link) in [
        ("ex_rep_mem", Link::Static),
        ("ex_rep_mem_shared", Link::Shared),
    ] {
        let exe = build_c_with(name, &["examples/c/ex_rep_mem.c"], &[], link);
        let out = run_ok(&exe, &[]);
        for want in [
            "site 2 reads fruit=apple",
            "site 3 reads fruit=apple",
            "-- losing the master (site 1)",
            "is the new master",
        ] {
            assert!(out.contains(want), "{name}: no {want:?} in:\n{out}");
        }
        let after = &out[out.find("is the new master").unwrap()..];
        assert_eq!(
            after.matches("reads fruit=banana").count(),
            2,
            "{name}:\n{out}"
        );
    }
}

/// Kills the processes it holds by PID when dropped, also when a test fails.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One ex_rep_base process: its stdin, and its stdout lines as they come.
struct Site {
    stdin: ChildStdin,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Site {
    fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").expect("write to the site's stdin");
        self.stdin.flush().unwrap();
    }

    /// Waits (at most `secs`) for a line containing `want`; returns it.
    fn expect(&mut self, want: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(want) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {want:?}; saw {:?}", self.seen),
            }
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn ex_rep_base_three_processes_on_loopback() {
    let exe = build_c("ex_rep_base", &["examples/c/ex_rep_base.c"], &[]);
    let _shared = build_c_with(
        "ex_rep_base_shared",
        &["examples/c/ex_rep_base.c"],
        &[],
        Link::Shared,
    );
    let addrs: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let homes: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut procs = Procs(Vec::new());
    let mut sites = Vec::new();
    for i in 0..3 {
        let mut cmd = Command::new(&exe);
        cmd.arg("-h").arg(homes[i].path()).arg("-l").arg(&addrs[i]);
        for (j, a) in addrs.iter().enumerate() {
            if j != i {
                cmd.arg("-r").arg(a);
            }
        }
        cmd.arg(if i == 0 { "-M" } else { "-C" })
            .args(["-n", "3", "-p", ["100", "50", "20"][i]])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn ex_rep_base");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take().unwrap();
        procs.0.push(child);
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        sites.push(Site {
            stdin,
            lines: rx,
            seen: Vec::new(),
        });
    }
    sites[0].expect("EVENT: now master", 30);
    sites[1].expect("EVENT: startup done", 60);
    sites[2].expect("EVENT: startup done", 60);

    sites[0].send("put colour blue");
    let line = sites[0].expect("committed colour=blue", 30);
    let token = line
        .split("token=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    for s in &mut sites[1..] {
        s.send(&format!("wait {token}"));
        s.expect("applied", 60);
        s.send("get colour");
        s.expect("colour=blue", 30);
    }

    // Lose the master: the clients' heartbeat monitor calls an election,
    // which the higher-priority site 2 wins.
    procs.0[0].kill().unwrap();
    procs.0[0].wait().unwrap();
    sites[1].expect("EVENT: now master", 90);
    sites[2].expect("EVENT: new master", 90);
    sites[1].send("put colour green");
    let line = sites[1].expect("committed colour=green", 30);
    let token = line
        .split("token=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    sites[2].send(&format!("wait {token}"));
    sites[2].expect("applied", 60);
    sites[2].send("get colour");
    sites[2].expect("colour=green", 30);
    for s in &mut sites[1..] {
        s.send("quit");
    }
}

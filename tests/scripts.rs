//! Scripted scenario tests, in the style of etcd-io/raft's `testdata/*.txt`
//! interaction tests: each file under `tests/scripts/` drives a test-kit
//! cluster with a small command language and holds the output every command
//! must produce, so a bug found by a simulator seed can also be kept as a
//! short script a reader can follow.
//!
//! A script is a sequence of blocks: a command line starting with `> `,
//! then the lines it must print (none for a silent command). Lines starting
//! with `#` are comments. `DBREP_SCRIPTS_REWRITE=1 cargo test --test
//! scripts` rewrites the expected output from what the commands printed
//! (review the diff before committing it).
//!
//! Commands (`e` is a site id, durations take `us`, `ms` or `s`):
//! - `config segment BYTES` (before `cluster`): log segments of that size
//! - `cluster N [seed S]`: N sites with short timeouts, not started
//! - `start e master|client`
//! - `put e KEY VALUE`: a commit on `e`; prints its LSN or the error
//! - `get e KEY`: what `e`'s store holds
//! - `run DUR`: deliver messages and fire timers for that long
//! - `tick DUR`: let time pass with nothing delivered, then fire due timers
//! - `deliver [N]`: deliver the next N messages (default 1), printing each
//! - `drop [N]`: drop the next N messages, printing each
//! - `msgs`: list the messages in flight
//! - `elect e`: `e` calls an election
//! - `partition 1 2 / 3`: cut every link between the groups
//! - `isolate e`, `heal`
//! - `crash e [lose|keep]`: power loss (default) or process kill
//! - `restart e`: reopen from disk and start as a client
//! - `checkpoint e`: `e` writes a checkpoint and trims its log
//! - `log e`: where `e`'s log starts and ends, and how many snapshots it installed
//! - `state`: every site's role, generation, master, last and permanent LSN
//! - `events e`: the events `e` reported since the last `events e`
//! - `wait-master DUR`: run until one master is followed by every running
//!   site (at most DUR); prints the master

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use dbrep::testing::testkit::{short_timeouts, Cluster};
use dbrep::testing::CrashMode;
use dbrep::wire::peek_control;
use dbrep::{Eid, Role, StartAs};

mod common;

/// One script being run.
struct Runner {
    cluster: Option<Cluster>,
    segment_bytes: Option<u32>,
    events_seen: BTreeMap<Eid, usize>,
}

fn duration_us(s: &str) -> Result<u64, String> {
    let (num, mult) = if let Some(n) = s.strip_suffix("us") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1_000)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000_000)
    } else {
        return Err(format!("duration {s:?} needs a unit (us, ms, s)"));
    };
    num.parse::<u64>()
        .map(|n| n * mult)
        .map_err(|e| format!("duration {s:?}: {e}"))
}

fn eid(s: &str) -> Result<Eid, String> {
    s.parse().map_err(|e| format!("site id {s:?}: {e}"))
}

fn packet_line(from: Eid, to: Eid, control: &[u8]) -> String {
    match peek_control(control) {
        Ok((t, _, gen, _, lsn)) => format!("{from} -> {to} {t:?} gen {gen} lsn {lsn}"),
        Err(e) => format!("{from} -> {to} undecodable: {e}"),
    }
}

impl Runner {
    fn cluster(&mut self) -> Result<&mut Cluster, String> {
        self.cluster
            .as_mut()
            .ok_or_else(|| "no cluster yet: start the script with `cluster N`".to_string())
    }

    /// Runs one command; returns what it printed.
    fn run(&mut self, line: &str) -> Result<String, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let arg = |i: usize| {
            words
                .get(i)
                .copied()
                .ok_or_else(|| format!("`{line}`: missing argument {i}"))
        };
        let count = |i: usize| words.get(i).map_or(Ok(1), |n| n.parse::<usize>());
        let mut out = String::new();
        match words[0] {
            "cluster" => {
                let n: usize = arg(1)?.parse().map_err(|e| format!("cluster size: {e}"))?;
                let seed = match words.get(2) {
                    Some(&"seed") => arg(3)?.parse().map_err(|e| format!("seed: {e}"))?,
                    _ => 1,
                };
                let nsites = n as u32;
                let segment = self.segment_bytes;
                self.cluster = Some(Cluster::new(n, seed, move |_| {
                    let mut c = short_timeouts(nsites);
                    if let Some(bytes) = segment {
                        c.log.segment_size_bytes = bytes;
                    }
                    c
                }));
            }
            "start" => {
                let as_ = match arg(2)? {
                    "master" => StartAs::Master,
                    "client" => StartAs::Client,
                    other => return Err(format!("start as {other:?}: master or client")),
                };
                self.cluster()?.start(eid(arg(1)?)?, as_);
            }
            "put" => {
                let (e, k, v) = (eid(arg(1)?)?, arg(2)?, arg(3)?);
                match self.cluster()?.put(e, k.as_bytes(), v.as_bytes()) {
                    Ok(lsn) => writeln!(out, "committed at {lsn}").unwrap(),
                    Err(err) => writeln!(out, "error: {err}").unwrap(),
                }
            }
            "get" => {
                let (e, k) = (eid(arg(1)?)?, arg(2)?);
                let v = self.cluster()?.get(e, k.as_bytes());
                let v = v.map_or("<absent>".to_string(), |v| {
                    String::from_utf8_lossy(&v).into_owned()
                });
                writeln!(out, "{v}").unwrap();
            }
            "run" => {
                let us = duration_us(arg(1)?)?;
                self.cluster()?.run_for(us);
            }
            "tick" => {
                let us = duration_us(arg(1)?)?;
                let c = self.cluster()?;
                c.stall(us);
                c.tick_due();
            }
            "deliver" | "drop" => {
                let n = count(1).map_err(|e| format!("count: {e}"))?;
                let deliver = words[0] == "deliver";
                let c = self.cluster()?;
                for _ in 0..n {
                    let p = if deliver {
                        c.deliver_next()
                    } else {
                        c.drop_next()
                    };
                    let Some(p) = p else {
                        writeln!(out, "no message in flight").unwrap();
                        break;
                    };
                    let verb = if deliver { "" } else { "dropped " };
                    writeln!(out, "{verb}{}", packet_line(p.from, p.to, &p.control)).unwrap();
                }
            }
            "msgs" => {
                let c = self.cluster()?;
                for p in c.packets_in_flight() {
                    writeln!(out, "{}", packet_line(p.from, p.to, &p.control)).unwrap();
                }
                if c.in_flight() == 0 {
                    writeln!(out, "no message in flight").unwrap();
                }
            }
            "elect" => {
                let e = eid(arg(1)?)?;
                if let Err(err) = self.cluster()?.elect(e) {
                    writeln!(out, "error: {err}").unwrap();
                }
            }
            "partition" => {
                let rest = line["partition".len()..].trim();
                let groups: Vec<Vec<Eid>> = rest
                    .split('/')
                    .map(|g| g.split_whitespace().map(eid).collect())
                    .collect::<Result<_, _>>()?;
                let refs: Vec<&[Eid]> = groups.iter().map(Vec::as_slice).collect();
                self.cluster()?.partition(&refs);
            }
            "isolate" => {
                let e = eid(arg(1)?)?;
                self.cluster()?.isolate(e);
            }
            "heal" => self.cluster()?.heal(),
            "crash" => {
                let e = eid(arg(1)?)?;
                let mode = match words.get(2) {
                    None | Some(&"lose") => CrashMode::LoseUnsynced,
                    Some(&"keep") => CrashMode::KeepAll,
                    Some(other) => return Err(format!("crash mode {other:?}: lose or keep")),
                };
                self.cluster()?.crash(e, mode);
            }
            "restart" => {
                let e = eid(arg(1)?)?;
                if let Err(err) = self.cluster()?.restart(e) {
                    writeln!(out, "error: {err}").unwrap();
                }
            }
            "log" => {
                let e = eid(arg(1)?)?;
                let core = self.cluster()?.core(e);
                let outdated = core.stats(false).outdated;
                let log = core.storage().log();
                writeln!(
                    out,
                    "site {e}: log after {} up to {}, snapshots installed {outdated}",
                    log.base_lsn(),
                    log.last_lsn()
                )
                .unwrap();
            }
            "checkpoint" => {
                let e = eid(arg(1)?)?;
                let storage = self.cluster()?.core(e).storage_mut();
                match storage.checkpoint() {
                    Ok(lsn) => {
                        let base = storage.log().base_lsn();
                        writeln!(out, "checkpoint at {lsn}, log starts after {base}").unwrap()
                    }
                    Err(err) => writeln!(out, "error: {err}").unwrap(),
                }
            }
            "config" => {
                // `config segment BYTES` before `cluster`: small log segments.
                let bytes: u32 = arg(2)?.parse().map_err(|e| format!("segment size: {e}"))?;
                self.segment_bytes = Some(bytes);
            }
            "state" => {
                let c = self.cluster()?;
                for e in c.ids() {
                    if !c.is_up(e) {
                        writeln!(out, "site {e}: down").unwrap();
                        continue;
                    }
                    let core = c.core(e);
                    let role = match core.role() {
                        Role::Master => "master",
                        Role::Client => "client",
                        _ => "none",
                    };
                    let master = core.master().map_or("-".to_string(), |m| m.to_string());
                    let last = core.storage().log().last_lsn();
                    let perm = core.stats(false).perm_lsn;
                    writeln!(
                        out,
                        "site {e}: {role} gen {} master {master} last {last} perm {perm}",
                        core.gen()
                    )
                    .unwrap();
                }
            }
            "events" => {
                let e = eid(arg(1)?)?;
                let seen = self.events_seen.get(&e).copied().unwrap_or(0);
                let c = self.cluster()?;
                let events = c.events(e);
                for ev in &events[seen.min(events.len())..] {
                    writeln!(out, "{ev:?}").unwrap();
                }
                let n = events.len();
                self.events_seen.insert(e, n);
            }
            "wait-master" => {
                let us = duration_us(arg(1)?)?;
                let c = self.cluster()?;
                let settled = |c: &mut Cluster| {
                    let m = c.masters();
                    m.len() == 1
                        && c.ids().into_iter().filter(|&e| c.is_up(e)).all(|e| {
                            let core = c.site(e).core();
                            e == m[0] || (core.master() == Some(m[0]) && !core.is_syncing())
                        })
                };
                if c.run_until(us, 10_000, settled) {
                    writeln!(out, "master {}", c.masters()[0]).unwrap();
                } else {
                    writeln!(out, "no settled master").unwrap();
                }
            }
            other => return Err(format!("unknown command {other:?}")),
        }
        Ok(out)
    }
}

/// Runs a script; returns its failures, and the text it would hold if
/// rewritten from what the commands printed (comments kept in place).
fn run_script(path: &Path) -> (Vec<String>, String) {
    let text = std::fs::read_to_string(path).expect("script is readable");
    let mut runner = Runner {
        cluster: None,
        segment_bytes: None,
        events_seen: BTreeMap::new(),
    };
    let mut failures = Vec::new();
    let mut rewritten = String::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let Some(cmd) = lines[i].strip_prefix("> ") else {
            // A comment or a blank line outside a command's output.
            if lines[i].starts_with('#') {
                writeln!(rewritten, "{}", lines[i]).unwrap();
            }
            i += 1;
            continue;
        };
        let lineno = i + 1;
        i += 1;
        let mut expected = String::new();
        while i < lines.len() && !lines[i].starts_with("> ") && !lines[i].starts_with('#') {
            if !lines[i].trim().is_empty() {
                expected.push_str(lines[i]);
                expected.push('\n');
            }
            i += 1;
        }
        let cmd = cmd.trim();
        let got = runner
            .run(cmd)
            .unwrap_or_else(|e| format!("script error: {e}\n"));
        if got != expected {
            failures.push(format!(
                "{}:{lineno}: `{cmd}`\n--- expected\n{expected}--- got\n{got}",
                path.display()
            ));
        }
        writeln!(rewritten, "> {cmd}").unwrap();
        rewritten.push_str(&got);
        if !got.is_empty() {
            rewritten.push('\n');
        }
    }
    (failures, rewritten)
}

fn scripts() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/scripts exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    v.sort();
    v
}

#[test]
fn scripted_scenarios() {
    let rewrite = common::env_u64("DBREP_SCRIPTS_REWRITE") == Some(1);
    let all = scripts();
    assert!(!all.is_empty(), "no scripts under tests/scripts");
    let mut failures = Vec::new();
    for path in all {
        let (f, rewritten) = run_script(&path);
        if rewrite {
            std::fs::write(&path, rewritten).expect("rewrite the script");
        } else {
            failures.extend(f);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The runner itself: a wrong expectation is reported, not passed over.
#[test]
fn a_wrong_expectation_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("wrong.txt");
    std::fs::write(
        &path,
        "> cluster 1\n> start 1 master\n> get 1 k\nsomething\n",
    )
    .unwrap();
    let (failures, rewritten) = run_script(&path);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(rewritten.contains("> get 1 k\n<absent>\n"), "{rewritten}");
}

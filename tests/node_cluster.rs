//! Real `node` processes on loopback, in membership mode: site 1 founds the
//! group (`--bootstrap`) and the others join it; five sites survive the
//! SIGKILL of any two (the master included) with writes continuing, the
//! killed sites restart and catch up with identical data, a sixth site joins
//! a running group through one member, and a client speaking garbage
//! gets `ERR` on a connection that stays usable; a site that is not master
//! redirects clients to the master's client address; SIGTERM and SIGINT stop
//! a site cleanly (exit 0) without losing anything answered OK, also while
//! a client is writing. Every process started is killed by PID when the test
//! ends, also when it fails.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Generous: the machine is shared. Only outcomes are asserted.
const DEADLINE: Duration = Duration::from_secs(120);

fn build_node() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--example", "node"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build --example node failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("debug").join("examples").join("node")
}

/// A free port below Linux's ephemeral range (32768 and up), so no
/// outgoing connection can take a killed site's port before it restarts.
fn free_port() -> SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 20_000 + (std::process::id() % 600) * 20;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (base - 20_000 + n) % 12_000;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        if TcpListener::bind(addr).is_ok() {
            return addr;
        }
        assert!(n < 12_000, "no free port below 32000");
    }
}

fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One line-protocol connection.
struct Client {
    out: TcpStream,
    input: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Client {
            out: s.try_clone()?,
            input: BufReader::new(s),
        })
    }

    fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<String> {
        self.out.write_all(bytes)?;
        let mut line = String::new();
        if self.input.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line.trim_end().to_string())
    }

    fn ask(&mut self, line: &str) -> std::io::Result<String> {
        self.send_raw(format!("{line}\n").as_bytes())
    }
}

/// Sites 1..=n as child processes; dropping it kills every child by PID.
struct Cluster {
    exe: PathBuf,
    root: tempfile::TempDir,
    listen: Vec<SocketAddr>,
    client: Vec<SocketAddr>,
    /// Whom each site names in `--peers` (indexes).
    peers: Vec<Vec<usize>>,
    children: Vec<Option<Child>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            // What each site logged, to tell why.
            for i in 0..self.children.len() {
                let log =
                    std::fs::read_to_string(log_path(self.root.path(), i)).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(25)..];
                eprintln!(
                    "--- site {} log (last lines) ---\n{}",
                    i + 1,
                    tail.join("\n")
                );
            }
        }
    }
}

impl Cluster {
    /// Site 1 founds the group; sites 2..=n join it, naming every other
    /// site in `--peers`. Returns once every site is a member of the group
    /// of `n` (joins happen one at a time).
    fn start(n: usize) -> Cluster {
        let mut c = Cluster {
            exe: build_node(),
            root: tempfile::tempdir().expect("temporary directory"),
            listen: (0..n).map(|_| free_port()).collect(),
            client: (0..n).map(|_| free_port()).collect(),
            peers: (0..n)
                .map(|i| {
                    if i == 0 {
                        Vec::new()
                    } else {
                        (0..n).filter(|&j| j != i).collect()
                    }
                })
                .collect(),
            children: (0..n).map(|_| None).collect(),
        };
        for i in 0..n {
            c.spawn(i);
        }
        c.wait_group_of(n);
        c
    }

    /// Starts one more site (its eid is the next one), naming only the
    /// sites `via` in `--peers`; returns its index.
    fn add_site(&mut self, via: &[usize]) -> usize {
        self.listen.push(free_port());
        self.client.push(free_port());
        self.peers.push(via.to_vec());
        self.children.push(None);
        let i = self.children.len() - 1;
        self.spawn(i);
        i
    }

    /// Waits until every running site reports a group of `n` sites.
    fn wait_group_of(&self, n: usize) {
        let want = n.to_string();
        wait_until(
            &format!("every running site to be in a group of {n}"),
            || {
                self.running()
                    .into_iter()
                    .all(|i| self.status(i).is_some_and(|s| s["nsites"] == want))
                    .then_some(())
            },
        );
    }

    /// The `members` line of site `i`, as eids.
    fn members(&self, i: usize) -> Option<Vec<String>> {
        let line = Client::connect(self.client[i]).ok()?.ask("members").ok()?;
        let rest = line.strip_prefix("MEMBERS ")?;
        Some(
            rest.split_whitespace()
                .filter_map(|m| m.split_once('@').map(|(eid, _)| eid.to_string()))
                .collect(),
        )
    }

    fn dir(&self, i: usize) -> PathBuf {
        self.root.path().join(format!("site{}", i + 1))
    }

    fn spawn(&mut self, i: usize) {
        assert!(self.children[i].is_none());
        let peers: Vec<String> = self.peers[i]
            .iter()
            .map(|&j| self.listen[j].to_string())
            .collect();
        let log = std::fs::File::create(log_path(self.root.path(), i)).expect("log file");
        let child = Command::new(&self.exe)
            .args(["--id", &(i + 1).to_string()])
            .args(["--listen", &self.listen[i].to_string()])
            .args(["--client", &self.client[i].to_string()])
            .args(["--peers", &peers.join(",")])
            .arg("--dir")
            .arg(self.dir(i))
            .args(["--durability", "write-no-sync", "--no-stdin"])
            // Site 1 founds the group; a restart of it finds the group in
            // its log and ignores the flag.
            .args(if i == 0 {
                &["--bootstrap"][..]
            } else {
                &[][..]
            })
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start node");
        self.children[i] = Some(child);
    }

    /// Sends `signal` ("TERM", "INT") to site `i` by PID, with kill(1).
    fn signal(&self, i: usize, signal: &str) {
        let pid = self.children[i].as_ref().expect("running").id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Waits, bounded, for site `i` to exit after a signal; returns whether
    /// it exited with status 0. The child stays in the guard until it has.
    fn wait_stopped(&mut self, i: usize) -> bool {
        let clean = wait_exit_within(self.children[i].as_mut().expect("running"), STOP_MAX);
        self.children[i] = None;
        clean
    }

    /// What site `i` has logged so far.
    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(log_path(self.root.path(), i)).unwrap_or_default()
    }

    /// SIGKILL, by PID.
    fn kill(&mut self, i: usize) {
        let mut child = self.children[i].take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    fn running(&self) -> Vec<usize> {
        (0..self.children.len())
            .filter(|&i| self.children[i].is_some())
            .collect()
    }

    fn status(&self, i: usize) -> Option<HashMap<String, String>> {
        let line = Client::connect(self.client[i]).ok()?.ask("status").ok()?;
        Some(
            line.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// Waits for one running site to be master with every running site
    /// following it; returns its index.
    fn wait_for_master(&self) -> usize {
        wait_until("a master every running site follows", || {
            let st: Vec<(usize, HashMap<String, String>)> = self
                .running()
                .into_iter()
                .map(|i| self.status(i).map(|s| (i, s)))
                .collect::<Option<_>>()?;
            let masters: Vec<usize> = st
                .iter()
                .filter(|(_, s)| s["role"] == "master")
                .map(|(i, _)| *i)
                .collect();
            let [m] = masters[..] else { return None };
            let id = (m + 1).to_string();
            st.iter().all(|(_, s)| s["master"] == id).then_some(m)
        })
    }

    /// Puts `n` keys `<key>0..` with values `<value>0..` (each answered
    /// `OK`) and adds them to `keys`.
    fn put_many(&self, n: usize, key: &str, value: &str, keys: &mut Vec<(String, String)>) {
        for k in 0..n {
            let (key, value) = (format!("{key}{k}"), format!("{value}{k}"));
            self.put(&key, &value);
            keys.push((key, value));
        }
    }

    /// Puts `key` through any running site, following redirects, until it is `OK`.
    fn put(&self, key: &str, value: &str) {
        wait_until(&format!("put {key} to be answered OK"), || {
            let mut target = self.client[self.running()[0]];
            for _ in 0..3 {
                let reply = Client::connect(target)
                    .ok()?
                    .ask(&format!("put {key} {value}"))
                    .ok()?;
                if reply.starts_with("OK ") {
                    return Some(());
                }
                target = reply.strip_prefix("REDIRECT ")?.parse().ok()?;
            }
            None
        })
    }

    /// Checks that every running site but the master `m` answers a put and
    /// a linearizable get with `REDIRECT <m's client address>` (waiting,
    /// bounded, while a site answers `ERR` because it has not heard yet).
    fn assert_redirects_to(&self, m: usize) {
        let want = format!("REDIRECT {}", self.client[m]);
        for i in self.running().into_iter().filter(|&i| i != m) {
            for req in ["put redirected x", "get redirected"] {
                let reply = wait_until(&format!("site {} to answer {req:?}", i + 1), || {
                    let r = Client::connect(self.client[i]).ok()?.ask(req).ok()?;
                    (!r.starts_with("ERR ")).then_some(r)
                });
                assert_eq!(reply, want, "site {} answered {req:?}", i + 1);
            }
        }
    }

    /// Waits until every running site holds the master's data, then checks
    /// each holds every key answered OK.
    fn assert_converged(&self, m: usize, keys: &[(String, String)]) {
        wait_until("every running site to hold the master's data", || {
            let want = self.status(m)?;
            self.running()
                .into_iter()
                .all(|i| {
                    self.status(i)
                        .is_some_and(|s| s["digest"] == want["digest"] && s["lsn"] == want["lsn"])
                })
                .then_some(())
        });
        for i in self.running() {
            let mut c = Client::connect(self.client[i]).expect("connect");
            for (k, v) in keys {
                let got = c.ask(&format!("get {k} stale")).expect("get");
                assert_eq!(got, format!("VALUE {v}"), "site {} lost {k}", i + 1);
            }
        }
    }
}

fn log_path(root: &Path, i: usize) -> PathBuf {
    root.join(format!("site{}.log", i + 1))
}

#[test]
fn five_sites_survive_sigkill_of_the_master_and_another_then_catch_up() {
    let mut c = Cluster::start(5);
    let m = c.wait_for_master();
    c.assert_redirects_to(m);
    let mut keys = Vec::new();
    c.put_many(10, "before", "v", &mut keys);
    c.assert_converged(m, &keys);

    let other = (m + 2) % 5;
    c.kill(m);
    c.kill(other);
    let m2 = c.wait_for_master();
    assert!(m2 != m && m2 != other);
    c.assert_redirects_to(m2);
    c.put_many(10, "after", "w", &mut keys);
    c.assert_converged(m2, &keys);

    c.spawn(m);
    c.spawn(other);
    let m3 = c.wait_for_master();
    c.assert_converged(m3, &keys);

    // And a second pair, two clients this time: writes still continue.
    let (a, b) = ((m3 + 1) % 5, (m3 + 3) % 5);
    c.kill(a);
    c.kill(b);
    c.put("third", "x");
    keys.push(("third".into(), "x".into()));
    c.spawn(a);
    c.spawn(b);
    let m4 = c.wait_for_master();
    c.assert_converged(m4, &keys);
}

#[test]
fn a_sixth_site_joins_a_running_five_site_group_through_one_member() {
    let mut c = Cluster::start(5);
    let m = c.wait_for_master();
    let mut keys = Vec::new();
    c.put_many(5, "before", "v", &mut keys);
    // The sixth site knows one member only, and not the master.
    let via = (m + 1) % 5;
    let six = c.add_site(&[via]);
    c.wait_group_of(6);
    let want: Vec<String> = (1..=6).map(|e| e.to_string()).collect();
    for i in c.running() {
        assert_eq!(c.members(i), Some(want.clone()), "site {}'s members", i + 1);
    }
    let status = c.status(six).expect("site 6 answers");
    assert_eq!(status["nsites"], "6");
    assert_eq!(status["role"], "client");
    // It holds what was written before it came, and what is written now.
    c.put("with-six", "y");
    keys.push(("with-six".into(), "y".into()));
    c.assert_converged(m, &keys);
}

#[test]
fn a_client_speaking_garbage_gets_err_and_the_connection_stays_usable() {
    let c = Cluster::start(1);
    c.wait_for_master();
    let mut cl = Client::connect(c.client[0]).expect("connect");
    for junk in [
        &b"hello world\n"[..],
        b"\n",
        b"put onlykey\n",
        b"get\n",
        b"get k sideways\n",
        b"\xff\xfe\x00garbage\n",
    ] {
        let reply = cl.send_raw(junk).expect("an answer");
        assert!(reply.starts_with("ERR "), "{junk:?} got {reply:?}");
    }
    let long = format!("put k {}\n", "x".repeat(100_000));
    let reply = cl.send_raw(long.as_bytes()).expect("an answer");
    assert!(reply.starts_with("ERR "), "overlong line got {reply:?}");
    assert!(cl.ask("put k v").unwrap().starts_with("OK "));
    assert_eq!(cl.ask("get k").unwrap(), "VALUE v");
    assert_eq!(cl.ask("get nothing stale").unwrap(), "NOTFOUND");
    assert!(cl.ask("status").unwrap().contains("role=master"));
}

/// Waits (bounded) for a child to exit; returns whether it exited with 0.
fn wait_exit(child: &mut Child) -> bool {
    wait_until("the node to exit", || child.try_wait().ok().flatten()).success()
}

/// The longest a signalled node may take to exit: its bounded wait for the
/// requests in flight (10 s) and for an election under way (1.5 s), with
/// room for a loaded machine.
const STOP_MAX: Duration = Duration::from_secs(40);

/// Waits at most `max` for a child to exit; returns whether it exited with 0.
fn wait_exit_within(child: &mut Child, max: Duration) -> bool {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.success();
        }
        assert!(
            start.elapsed() < max,
            "the node did not exit within {max:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_stops_the_master_cleanly_while_a_client_writes_and_nothing_ok_is_lost() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let mut c = Cluster::start(3);
    let m = c.wait_for_master();
    let mut keys = Vec::new();
    c.put_many(5, "before", "v", &mut keys);

    // A client writes to the master, one put after another, until the
    // master stops answering; it keeps what was answered OK.
    let oks = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (addr, oks) = (c.client[m], oks.clone());
        std::thread::spawn(move || {
            let mut cl = Client::connect(addr).expect("connect");
            let (mut answered, mut replies) = (Vec::new(), Vec::new());
            for n in 0..100_000 {
                let (key, value) = (format!("during{n}"), format!("d{n}"));
                let Ok(reply) = cl.ask(&format!("put {key} {value}")) else {
                    break; // the process ended before reading this request
                };
                let ok = reply.starts_with("OK ");
                let last = reply == "ERR shutting down";
                replies.push(reply);
                if ok {
                    answered.push((key, value));
                    oks.fetch_add(1, Ordering::Release);
                }
                if last {
                    break;
                }
            }
            (answered, replies)
        })
    };
    wait_until("the writer to have puts answered OK", || {
        (oks.load(Ordering::Acquire) >= 3).then_some(())
    });
    c.signal(m, "TERM");
    assert!(c.wait_stopped(m), "SIGTERM did not exit 0");
    let (answered, replies) = writer.join().expect("writer");
    for r in &replies {
        assert!(
            r.starts_with("OK ") || r.starts_with("NOTPERM ") || r == "ERR shutting down",
            "the writer got {r:?} while the master shut down"
        );
    }
    let log = c.log(m);
    assert!(
        log.contains("shutting down on SIGTERM"),
        "site {} log:\n{log}",
        m + 1
    );
    assert!(
        log.contains("stopped cleanly"),
        "site {} log:\n{log}",
        m + 1
    );
    keys.extend(answered);

    // The other two carry on, and the stopped site comes back with
    // everything answered OK, its own writes included.
    let m2 = c.wait_for_master();
    assert_ne!(m2, m);
    c.put("after", "a");
    keys.push(("after".into(), "a".into()));
    c.spawn(m);
    let m3 = c.wait_for_master();
    c.assert_converged(m3, &keys);
}

#[test]
fn sigint_stops_a_site_cleanly_and_it_restarts_with_its_data() {
    let mut c = Cluster::start(1);
    c.wait_for_master();
    let mut cl = Client::connect(c.client[0]).expect("connect");
    assert!(cl.ask("put k v").unwrap().starts_with("OK "));
    c.signal(0, "INT");
    assert!(c.wait_stopped(0), "SIGINT did not exit 0");
    // The idle connection is closed, not left hanging.
    assert!(cl.ask("get k").is_err(), "a stopped node answered");
    assert!(c.log(0).contains("shutting down on SIGINT"));
    c.spawn(0);
    c.wait_for_master();
    let mut cl = Client::connect(c.client[0]).expect("connect");
    assert_eq!(cl.ask("get k").unwrap(), "VALUE v");
}

#[test]
fn the_shutdown_command_and_end_of_stdin_stop_a_node_cleanly() {
    let mut c = Cluster::start(1);
    c.wait_for_master();
    let mut cl = Client::connect(c.client[0]).expect("connect");
    assert!(cl.ask("put k v").unwrap().starts_with("OK "));
    assert_eq!(cl.ask("shutdown").unwrap(), "OK shutting down");
    // The child stays in the guard until it has exited.
    let clean = wait_exit(c.children[0].as_mut().expect("running"));
    c.children[0] = None;
    assert!(clean, "shutdown did not exit 0");

    // The same site again, stopped by closing its standard input this time;
    // what was answered OK is still there.
    let mut child = Command::new(&c.exe)
        .args(["--id", "1", "--listen", &c.listen[0].to_string()])
        .args(["--client", &c.client[0].to_string()])
        .arg("--dir")
        .arg(c.dir(0))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start node");
    let stdin = child.stdin.take();
    c.children[0] = Some(child);
    c.wait_for_master();
    let mut cl = Client::connect(c.client[0]).expect("connect");
    assert_eq!(cl.ask("get k").unwrap(), "VALUE v");
    drop(stdin);
    let clean = wait_exit(c.children[0].as_mut().expect("running"));
    c.children[0] = None;
    assert!(clean, "end of stdin did not exit 0");
}

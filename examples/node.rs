//! One dbrep site per process, on real TCP, with a plain-text client port.
//!
//! ```text
//! # site 1 founds the group; site 2 joins it by naming any member
//! cargo run --release --example node -- --id 1 --listen 127.0.0.1:5551 \
//!     --client 127.0.0.1:6551 --dir /tmp/site1 --bootstrap
//! cargo run --release --example node -- --id 2 --listen 127.0.0.1:5552 \
//!     --client 127.0.0.1:6552 --dir /tmp/site2 --peers 127.0.0.1:5551
//! printf 'put colour blue\nget colour\nstatus\nmembers\n' | nc 127.0.0.1 6551
//! ```
//!
//! Group: without `--nsites` the group is the replicated membership
//! ([`ConfigFlag::GroupMembership`]): `--bootstrap` founds it (this site
//! starts as master on an empty directory and is the group's only member);
//! any other new site joins by naming at least one member in `--peers` and
//! is added by the master once it has caught up; a site that is already a
//! member restarts from its log (where `--bootstrap` is ignored). With
//! `--nsites N` the group is fixed at N sites, as configured on every site,
//! and `--bootstrap` is refused.
//!
//! Options: `--priority N` (default 100; 0 = never master), `--nsites N`
//! (fixed-size group, see above), `--ack all|all-available|quorum|one|none`
//! (default quorum), `--durability sync|write-no-sync|no-sync` (default
//! sync), `--no-stdin` (do not stop at end of standard input).
//!
//! Shutdown: the `shutdown` client command, end of standard input (close
//! it, or Ctrl-D), SIGTERM and SIGINT (Ctrl-C) all take the same clean path:
//! the node stops admitting client requests (a request read from now on is
//! answered `ERR shutting down` and its connection closed; a new connection
//! gets the same line), waits for the requests already admitted to be
//! answered (a put still waiting for acknowledgements ends `OK` or
//! `NOTPERM` within the ack timeout; the wait is bounded by
//! [`DRAIN_MAX`]), stops the network host, makes the whole log durable
//! (`Env::log_flush`, whatever `--durability` says), and exits 0 (1 if
//! stopping the host or the flush failed). A signal is logged as `shutting
//! down on SIGTERM` (or SIGINT); a second signal during the shutdown ends
//! the process at once with status 1. The signals are caught with the
//! `signal-hook` crate, on a thread of their own that wakes the main thread
//! through the same channel the other reasons to stop use: no handler runs
//! application code, and nothing polls. SIGKILL still ends the process at
//! once; with `--durability sync` that loses nothing answered `OK`,
//! because the log is durable before a commit is acknowledged.
//!
//! Redirects: every node puts its client address in the network host's
//! handshake ([`NetConfig::app_data`]); a node that is not master answers
//! `REDIRECT` with the address the current master's handshake carried
//! ([`Net::peer_info`]).

#[path = "node/protocol.rs"]
mod protocol;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use dbrep::net::{Net, NetConfig};
use dbrep::{AckPolicy, ConfigFlag, Durability, Env, EnvConfig, LogConfig, StartAs, TimeoutKind};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Longest request line accepted.
const MAX_LINE: u64 = 4096;
/// Most client connections served at once.
const MAX_CLIENTS: usize = 256;
/// Longest a shutdown waits for the client requests already admitted to be
/// answered: above the longest a request can wait by itself (a put waits at
/// most the ack timeout, 2 s; a read at most `protocol::READ_TIMEOUT`, 5 s).
const DRAIN_MAX: Duration = Duration::from_secs(10);

/// The running site, shared by every client thread.
pub struct Node {
    id: i32,
    env: Env,
    net: Net,
    client_addr: SocketAddr,
    peers: Vec<SocketAddr>,
    gate: Gate,
}

/// Why the node stops. Every reason goes through the same channel, which
/// the main thread waits on, and the same shutdown path.
enum Stop {
    /// The `shutdown` client command.
    Command,
    /// End of standard input.
    EndOfInput,
    /// SIGTERM or SIGINT, by name.
    Signal(&'static str),
}

/// Admits client requests until the node stops, and counts those admitted
/// but not answered yet, so that a shutdown can wait for them.
struct Gate {
    /// (requests admitted and not yet answered, closed).
    state: Mutex<(usize, bool)>,
    /// Signalled when the last admitted request has been answered.
    idle: Condvar,
}

/// One admitted request; dropping it (once answered) lets a shutdown go on.
struct Admitted<'a>(&'a Gate);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let mut s = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0 -= 1;
        if s.0 == 0 {
            self.0.idle.notify_all();
        }
    }
}

impl Gate {
    fn new() -> Gate {
        Gate {
            state: Mutex::new((0, false)),
            idle: Condvar::new(),
        }
    }

    /// Admits one request, or `None` once the node is stopping.
    fn admit(&self) -> Option<Admitted<'_>> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.1 {
            return None;
        }
        s.0 += 1;
        Some(Admitted(self))
    }

    fn is_closed(&self) -> bool {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    /// Admits nothing more, then waits until every admitted request has
    /// been answered, at most `max`; returns how many are still unanswered.
    fn close_and_drain(&self, max: Duration) -> usize {
        let deadline = Instant::now() + max;
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.1 = true;
        while s.0 > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            s = match self.idle.wait_timeout(s, left) {
                Ok((s, _)) => s,
                Err(e) => e.into_inner().0,
            };
        }
        s.0
    }
}

struct Args {
    id: i32,
    listen: SocketAddr,
    client: SocketAddr,
    peers: Vec<SocketAddr>,
    dir: PathBuf,
    priority: u32,
    nsites: Option<u32>,
    bootstrap: bool,
    ack: AckPolicy,
    durability: Durability,
    watch_stdin: bool,
}

const USAGE: &str = "usage: node --id N --listen ADDR --client ADDR --dir DIR [--peers A,B,..] \
[--bootstrap | --nsites N] [--priority N] [--ack all|all-available|quorum|one|none] \
[--durability sync|write-no-sync|no-sync] [--no-stdin]";

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut id, mut listen, mut client, mut dir) = (None, None, None, None);
    let mut a = Args {
        id: 0,
        listen: "127.0.0.1:0".parse().unwrap(),
        client: "127.0.0.1:0".parse().unwrap(),
        peers: Vec::new(),
        dir: PathBuf::new(),
        priority: 100,
        nsites: None,
        bootstrap: false,
        ack: AckPolicy::Quorum,
        durability: Durability::Sync,
        watch_stdin: true,
    };
    let addr = |s: String| {
        s.parse::<SocketAddr>()
            .map_err(|e| format!("bad address {s:?}: {e}"))
    };
    while let Some(flag) = it.next() {
        if flag == "--no-stdin" {
            a.watch_stdin = false;
            continue;
        }
        if flag == "--bootstrap" {
            a.bootstrap = true;
            continue;
        }
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<u32>().map_err(|e| format!("{flag} {v:?}: {e}"));
        match flag.as_str() {
            "--id" => id = Some(v.parse::<i32>().map_err(|e| format!("--id {v:?}: {e}"))?),
            "--listen" => listen = Some(addr(v)?),
            "--client" => client = Some(addr(v)?),
            "--dir" => dir = Some(PathBuf::from(v)),
            "--peers" => {
                a.peers = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| addr(s.to_string()))
                    .collect::<Result<_, _>>()?
            }
            "--priority" => a.priority = num(&v)?,
            "--nsites" => a.nsites = Some(num(&v)?),
            "--ack" => {
                a.ack = match v.as_str() {
                    "all" => AckPolicy::All,
                    "all-available" => AckPolicy::AllAvailable,
                    "quorum" => AckPolicy::Quorum,
                    "one" => AckPolicy::One,
                    "none" => AckPolicy::None,
                    _ => return Err(format!("unknown ack policy {v:?}")),
                }
            }
            "--durability" => {
                a.durability = match v.as_str() {
                    "sync" => Durability::Sync,
                    "write-no-sync" => Durability::WriteNoSync,
                    "no-sync" => Durability::NoSync,
                    _ => return Err(format!("unknown durability {v:?}")),
                }
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    a.id = id.ok_or("--id is required")?;
    a.listen = listen.ok_or("--listen is required")?;
    a.client = client.ok_or("--client is required")?;
    a.dir = dir.ok_or("--dir is required")?;
    a.peers.retain(|p| *p != a.listen);
    if a.bootstrap && a.nsites.is_some() {
        return Err(
            "--bootstrap founds a replicated group, whose size is its membership; \
                    --nsites N fixes the size instead: give one or the other"
                .into(),
        );
    }
    Ok(a)
}

fn env_config(a: &Args) -> EnvConfig {
    let mut c = EnvConfig {
        log: LogConfig {
            durability: a.durability,
            ..LogConfig::default()
        },
        ..EnvConfig::default()
    };
    match a.nsites {
        Some(n) => c.rep.nsites = n,
        // The group is the log's; the host advertises the listen address.
        None => c.rep.membership = true,
    }
    c.rep.priority = a.priority;
    c.rep.ack_policy = a.ack;
    c.rep.set_timeout(TimeoutKind::Ack, 2_000_000);
    c.rep.set_timeout(TimeoutKind::Election, 1_500_000);
    c.rep.set_timeout(TimeoutKind::HeartbeatSend, 200_000);
    c.rep.set_timeout(TimeoutKind::HeartbeatMonitor, 2_000_000);
    c.rep.set_timeout(TimeoutKind::MasterSearch, 1_000_000);
    c
}

fn start(a: &Args) -> Result<Arc<Node>, String> {
    let env = Env::open(&a.dir, env_config(a)).map_err(|e| e.to_string())?;
    let mut nc = NetConfig::new(a.id, a.listen);
    nc.peers = a.peers.clone();
    if a.bootstrap {
        if env.rep_membership().is_some() {
            log::info!(
                "site {}: already a member of a group (from its log): --bootstrap ignored",
                a.id
            );
        } else {
            nc.start_as = StartAs::Master;
        }
    } else if env.rep_get_config(ConfigFlag::GroupMembership)
        && env.rep_membership().is_none()
        && a.peers.is_empty()
    {
        return Err(
            "a new site joins a group by naming a member in --peers (or founds one with \
             --bootstrap)"
                .into(),
        );
    }
    nc.app_data = a.client.to_string().into_bytes();
    nc.initial_election_wait = Duration::from_secs(1);
    nc.election_retry_min = Duration::from_millis(200);
    nc.election_retry_max = Duration::from_secs(2);
    nc.connect_retry_min = Duration::from_millis(20);
    nc.connect_retry_max = Duration::from_secs(1);
    let net = Net::new(env.clone(), nc).map_err(|e| e.to_string())?;
    net.start().map_err(|e| e.to_string())?;
    Ok(Arc::new(Node {
        id: a.id,
        env,
        net,
        client_addr: a.client,
        peers: a.peers.clone(),
        gate: Gate::new(),
    }))
}

fn serve_client(node: &Node, stream: TcpStream, shutdown: &Sender<Stop>) {
    let peer = stream.peer_addr().map_or("?".into(), |a| a.to_string());
    let _ = stream.set_nodelay(true);
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let overlong = line.len() as u64 > MAX_LINE && !line.ends_with(b"\n");
        if overlong {
            // Skip the rest of the overlong line, then answer it once.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut rest) {
                    Ok(0) | Err(_) => return,
                    Ok(_) if rest.ends_with(b"\n") => break,
                    Ok(_) => {}
                }
            }
        }
        // Admitted once read whole, so a slow sender cannot hold up a shutdown.
        let Some(admitted) = node.gate.admit() else {
            let _ = out.write_all(b"ERR shutting down\n");
            return;
        };
        let (reply, after) = if overlong {
            (
                format!("ERR request longer than {MAX_LINE} bytes"),
                protocol::After::Continue,
            )
        } else {
            match std::str::from_utf8(&line) {
                Ok(text) => protocol::answer(node, text),
                Err(_) => ("ERR request is not UTF-8".into(), protocol::After::Continue),
            }
        };
        log::debug!(
            "client {peer}: {:?} -> {reply}",
            String::from_utf8_lossy(&line).trim_end()
        );
        let written = out.write_all(format!("{reply}\n").as_bytes());
        drop(admitted);
        if written.is_err() {
            return;
        }
        match after {
            protocol::After::Continue => {}
            protocol::After::Close => return,
            protocol::After::Shutdown => {
                let _ = shutdown.send(Stop::Command);
                return;
            }
        }
    }
}

fn serve_clients(node: Arc<Node>, listener: TcpListener, shutdown: Sender<Stop>) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        if node.gate.is_closed() {
            let _ = stream.write_all(b"ERR shutting down\n");
            continue;
        }
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
            active.fetch_sub(1, Ordering::AcqRel);
            let _ = stream.write_all(b"ERR too many clients\n");
            continue;
        }
        let (node, active, shutdown) = (node.clone(), active.clone(), shutdown.clone());
        let spawned = std::thread::Builder::new()
            .name("client".into())
            .spawn(move || {
                serve_client(&node, stream, &shutdown);
                active.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            log::warn!("cannot start a client thread: {e}");
        }
    }
}

/// Catches SIGTERM and SIGINT on a thread of their own: the first becomes
/// a [`Stop::Signal`] on `tx`, a second ends the process at once.
fn catch_signals(tx: Sender<Stop>) -> Result<(), String> {
    let mut signals =
        Signals::new([SIGTERM, SIGINT]).map_err(|e| format!("cannot catch signals: {e}"))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut caught = 0;
            for sig in signals.forever() {
                let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                caught += 1;
                if caught > 1 {
                    log::warn!("{name} again during the shutdown: exiting at once");
                    std::process::exit(1);
                }
                let _ = tx.send(Stop::Signal(name));
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the signal thread: {e}"))
}

/// The one way a running node stops: admit no more client requests, let
/// those admitted be answered, stop the network host, make the log
/// durable. Returns whether all of it went well.
fn shut_down(node: &Node) -> bool {
    let unanswered = node.gate.close_and_drain(DRAIN_MAX);
    if unanswered > 0 {
        log::warn!(
            "site {}: {unanswered} client requests still unanswered after {DRAIN_MAX:?}; \
             stopping anyway",
            node.id
        );
    }
    let mut clean = true;
    if let Err(e) = node.net.stop() {
        log::error!("site {}: stopping the host: {e}", node.id);
        clean = false;
    }
    if let Err(e) = node.env.log_flush() {
        log::error!("site {}: flushing the log: {e}", node.id);
        clean = false;
    }
    clean
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("node: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    // Caught from here on: a signal during the start is handled once the
    // node runs, by the same shutdown.
    let (shutdown_tx, shutdown_rx) = crossbeam_channel::bounded::<Stop>(4);
    if let Err(e) = catch_signals(shutdown_tx.clone()) {
        eprintln!("node {}: {e}", args.id);
        std::process::exit(1);
    }
    let listener = match TcpListener::bind(args.client) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("node: cannot listen for clients on {}: {e}", args.client);
            std::process::exit(1);
        }
    };
    let node = match start(&args) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("node {}: {e}", args.id);
            std::process::exit(1);
        }
    };
    log::info!(
        "site {}: replication on {}, clients on {}, peers {:?}, {}",
        node.id,
        node.net.local_addr(),
        args.client,
        node.peers,
        match node.env.rep_membership() {
            Some(g) => format!("group {g}"),
            None if args.nsites.is_none() => "joining a group".to_string(),
            None => format!("nsites {}", node.env.rep_get_nsites()),
        }
    );
    {
        let (node, tx) = (node.clone(), shutdown_tx.clone());
        std::thread::spawn(move || serve_clients(node, listener, tx));
    }
    if args.watch_stdin {
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::stdin().lock().read_to_end(&mut sink);
            let _ = shutdown_tx.send(Stop::EndOfInput);
        });
    }
    // Every sender lives as long as the process (the signal and accept
    // threads never end), so this returns only with a reason to stop.
    let why = match shutdown_rx.recv() {
        Ok(Stop::Command) => "on the shutdown command".to_string(),
        Ok(Stop::EndOfInput) => "at the end of standard input".to_string(),
        Ok(Stop::Signal(name)) => format!("on {name}"),
        Err(_) => "with no reason left to wait".to_string(),
    };
    log::info!("site {}: shutting down {why}", node.id);
    if !shut_down(&node) {
        std::process::exit(1);
    }
    log::info!("site {}: stopped cleanly", node.id);
    // Client threads may still hold the node; the process ends here.
    std::process::exit(0);
}

//! Replication throughput benchmark.
//!
//! ```text
//! cargo run --release --example bench -- inproc [--value-size N] [--window W] [--commits N]
//!     [--checkpoint-every N] [--segment-size BYTES] [--runs N]
//! ```
//!
//! `inproc`: one process, one thread, three sites (site 1 master, QUORUM
//! acks), in-memory logs, and in-memory FIFO message queues that this driver
//! delivers. Every message is fully encoded by the sender's core and decoded
//! by the receiver's, exactly as it would be across a network.
//!
//! Each commit is one put of an 8-byte key (a counter) and a value of
//! `--value-size` bytes. With `--window 1` a commit starts only when the one
//! before it is permanent; with `--window W` up to `W` commits are in flight
//! (the master queues them, and one drain of its output batches them into a
//! single log message). Every `--checkpoint-every` commits (by default,
//! every 16 MiB of log; 0 = never) each site takes a checkpoint, which trims
//! the log segments (`--segment-size`, default 4 MiB) before it, so the
//! log's memory stays bounded however many commits run. In memory a
//! checkpoint keeps a copy-on-write clone of the store, which costs O(1)
//! (writes after it copy the tree nodes they touch, once). The store itself
//! grows with the number of commits, since every key is new.
//!
//! The run ends when every commit is permanent on the master and applied on
//! both clients. Each client's log is then checked to hold exactly the
//! commits, in order, each once, and its store the right values; any
//! mismatch aborts with a non-zero exit status. The time spent checking is
//! excluded from the figures.
//!
//! Without `--value-size` / `--window` the four combinations of value size
//! 100 and 4096 with window 1 and 256 run one after another, each in a
//! fresh process. `--runs N` runs each combination N times, in turns, each
//! run in a fresh process: the machine's noise shows as the spread of the
//! lines. Each run prints one JSON line:
//!
//! ```text
//! {"name":"inproc","config":{"value_size":100,"window":1,"commits":200000,"sites":3,"ack_policy":"quorum"},
//!  "commits_per_sec":..., "ns_per_commit":..., "msgs_per_commit":..., "mb_per_sec":..., "peak_rss_kb":...}
//! ```
//!
//! `mb_per_sec` counts the user bytes committed (key + value) in units of
//! 10^6 bytes. `peak_rss_kb` is the peak resident memory (VmHWM) of the
//! process that ran the configuration.

use std::collections::VecDeque;
use std::io::Write;
use std::process::exit;
use std::rc::Rc;
use std::time::{Duration, Instant};

use dbrep::db::{encode_ops, for_each_op, Op, OpLimits, OpRef};
use dbrep::log::{LogConfig, RecordType};
use dbrep::rep::{Core, Eid, Event, OutMsg, RepMeta, Role, StartAs, EID_BROADCAST};
use dbrep::storage::Storage;
use dbrep::{AckPolicy, Lsn, RepConfig};

const SITES: Eid = 3;
const MASTER: Eid = 1;
const KEY_LEN: usize = 8;

/// Exit status of a run whose standard output was closed under it.
const STDOUT_CLOSED: i32 = 3;

#[derive(Clone, Debug)]
struct Config {
    value_size: usize,
    window: usize,
    commits: u64,
    checkpoint_every: u64,
    segment_size: u32,
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("bench: {msg}");
    exit(1);
}

fn usage() -> ! {
    eprintln!(
        "usage: bench inproc [--value-size N] [--window W] [--commits N] \
         [--checkpoint-every N] [--segment-size BYTES] [--runs N]"
    );
    exit(2);
}

/// Default commit counts: the four default runs together take well under a minute.
fn default_commits(value_size: usize, window: usize) -> u64 {
    match (value_size <= 1024, window > 1) {
        (true, false) => 200_000,
        (true, true) => 1_000_000,
        (false, false) => 50_000,
        (false, true) => 50_000,
    }
}

/// Log bytes appended between two checkpoints by default.
const CHECKPOINT_LOG_BYTES: u64 = 16 << 20;

/// Default checkpoint interval, in commits: one per [`CHECKPOINT_LOG_BYTES`]
/// of log, so the log held in memory stays bounded (a few segments of 4 MiB).
fn default_checkpoint_every(value_size: usize) -> u64 {
    // Record header, op count, kind, key length, key, value length, value.
    let record = 32 + 4 + 1 + 4 + KEY_LEN + 4 + value_size;
    CHECKPOINT_LOG_BYTES / record as u64
}

/// One message in flight.
struct Packet {
    from: Eid,
    to: Eid,
    msg: Shared,
}

/// A message body: a broadcast's is shared by its receivers, any other is
/// owned (no reference count to allocate).
enum Shared {
    One(OutMsg),
    Many(Rc<OutMsg>),
}

impl std::ops::Deref for Shared {
    type Target = OutMsg;

    fn deref(&self) -> &OutMsg {
        match self {
            Shared::One(m) => m,
            Shared::Many(m) => m,
        }
    }
}

struct Cluster {
    now: u64,
    /// Index `eid - 1`.
    cores: Vec<Core>,
    queue: VecDeque<Packet>,
    out: Vec<OutMsg>,
    events: Vec<Event>,
    msgs_delivered: u64,
}

impl Cluster {
    fn new(cfg: &Config) -> Cluster {
        let log_cfg = LogConfig {
            in_memory: true,
            segment_size_bytes: cfg.segment_size,
            ..LogConfig::default()
        };
        let rep_cfg = RepConfig {
            nsites: SITES as u32,
            ack_policy: AckPolicy::Quorum,
            ..RepConfig::default()
        };
        let mut cores = Vec::new();
        for eid in 1..=SITES {
            let storage = Storage::in_memory(log_cfg.clone());
            let mut core = Core::new(storage, RepMeta::default(), rep_cfg.clone())
                .unwrap_or_else(|e| fail(format!("core {eid}: {e}")));
            core.set_local_eid(eid)
                .unwrap_or_else(|e| fail(format!("set_local_eid {eid}: {e}")));
            cores.push(core);
        }
        Cluster {
            now: 1,
            cores,
            queue: VecDeque::new(),
            out: Vec::new(),
            events: Vec::new(),
            msgs_delivered: 0,
        }
    }

    fn core(&mut self, eid: Eid) -> &mut Core {
        &mut self.cores[(eid - 1) as usize]
    }

    fn tick_clock(&mut self) -> u64 {
        self.now += 1;
        self.now
    }

    /// Moves the output of `eid` onto the queue.
    fn collect(&mut self, eid: Eid) {
        let mut out = std::mem::take(&mut self.out);
        let idx = (eid - 1) as usize;
        self.cores[idx].take_output(&mut out, &mut self.events);
        for m in out.drain(..) {
            if m.eid == EID_BROADCAST {
                let m = Rc::new(m);
                for to in 1..=SITES {
                    if to != eid {
                        self.queue.push_back(Packet {
                            from: eid,
                            to,
                            msg: Shared::Many(m.clone()),
                        });
                    }
                }
            } else {
                self.queue.push_back(Packet {
                    from: eid,
                    to: m.eid,
                    msg: Shared::One(m),
                });
            }
        }
        self.out = out;
        for e in self.events.drain(..) {
            if matches!(
                e,
                Event::PermFailed(_) | Event::DupMaster | Event::JoinFailure
            ) {
                fail(format!("site {eid} reported {e:?}"));
            }
        }
    }

    /// Delivers queued messages, FIFO, until none are left.
    fn deliver_all(&mut self) {
        while let Some(p) = self.queue.pop_front() {
            let now = self.tick_clock();
            let idx = (p.to - 1) as usize;
            if let Err(e) = self.cores[idx].process(now, &p.msg.control, &p.msg.rec, p.from) {
                fail(format!(
                    "site {} rejected a message from {}: {e}",
                    p.to, p.from
                ));
            }
            self.msgs_delivered += 1;
            drop(p.msg);
            self.collect(p.to);
        }
    }

    fn start(&mut self) {
        let now = self.tick_clock();
        self.core(MASTER)
            .start(now, StartAs::Master, b"site1")
            .unwrap_or_else(|e| fail(format!("start master: {e}")));
        self.collect(MASTER);
        for eid in 2..=SITES {
            let now = self.tick_clock();
            self.core(eid)
                .start(now, StartAs::Client, format!("site{eid}").as_bytes())
                .unwrap_or_else(|e| fail(format!("start client {eid}: {e}")));
            self.collect(eid);
        }
        self.deliver_all();
        let last = self.core(MASTER).storage().log().last_lsn();
        for eid in 2..=SITES {
            let c = self.core(eid);
            if c.role() != Role::Client || c.master() != Some(MASTER) {
                fail(format!("site {eid} did not join master {MASTER}"));
            }
            if c.storage().log().last_lsn() != last {
                fail(format!("site {eid} did not catch up at start"));
            }
        }
        if !self.core(MASTER).is_permanent(last) {
            fail("the master's generation start is not permanent after startup");
        }
    }
}

/// The value committed with key number `i`: the key (so a value applied
/// under the wrong key shows), then a fixed filler that `init_value` wrote.
fn fill_value(i: u64, value: &mut [u8]) {
    let k = i.to_be_bytes();
    let n = value.len().min(KEY_LEN);
    value[..n].copy_from_slice(&k[..n]);
}

fn init_value(value: &mut [u8]) {
    for (j, b) in value.iter_mut().enumerate() {
        *b = (j % 251) as u8;
    }
}

/// Checks the commits a client applied since the last check, in LSN order.
struct Verifier {
    /// Last record checked on this client.
    upto: Lsn,
    /// Commits seen so far (the next expected key number).
    seen: u64,
    value: Vec<u8>,
}

impl Verifier {
    fn check(&mut self, eid: Eid, core: &Core) {
        let log = core.storage().log();
        let limits = OpLimits::default();
        let mut prev = self.upto;
        for rec in log.iter_from(self.upto) {
            let rec = rec.unwrap_or_else(|e| fail(format!("site {eid}: reading log: {e}")));
            if rec.lsn <= self.upto {
                continue;
            }
            if rec.prev_lsn != prev {
                fail(format!(
                    "site {eid}: record {} follows {} but the one before is {prev}",
                    rec.lsn, rec.prev_lsn
                ));
            }
            prev = rec.lsn;
            if rec.rtype != RecordType::Commit {
                fail(format!(
                    "site {eid}: unexpected {:?} at {}",
                    rec.rtype, rec.lsn
                ));
            }
            let i = self.seen;
            fill_value(i, &mut self.value);
            let mut n = 0;
            for_each_op(&rec.payload, &limits, |op| {
                n += 1;
                match op {
                    OpRef::Put { key, value }
                        if key == i.to_be_bytes() && value == &self.value[..] => {}
                    _ => fail(format!(
                        "site {eid}: commit {} at {} is not put #{i}",
                        self.seen, rec.lsn
                    )),
                }
            })
            .unwrap_or_else(|e| fail(format!("site {eid}: payload at {}: {e}", rec.lsn)));
            if n != 1 {
                fail(format!("site {eid}: commit at {} holds {n} ops", rec.lsn));
            }
            self.seen += 1;
        }
        if prev != log.last_lsn() {
            fail(format!("site {eid}: log check stopped at {prev}"));
        }
        self.upto = prev;
    }
}

fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn run_inproc(cfg: &Config) {
    let mut c = Cluster::new(cfg);
    c.start();
    let gen_start = c.core(MASTER).storage().log().last_lsn();
    let mut verifiers: Vec<Verifier> = (2..=SITES)
        .map(|_| Verifier {
            upto: gen_start,
            seen: 0,
            value: {
                let mut v = vec![0; cfg.value_size];
                init_value(&mut v);
                v
            },
        })
        .collect();

    // The payload template: one put; the key and value are patched per commit.
    let mut payload = Vec::new();
    encode_ops(
        &[Op::Put {
            key: vec![0; KEY_LEN],
            value: vec![0; cfg.value_size],
        }],
        &mut payload,
    );
    let key_at = 4 + 1 + 4;
    let value_at = key_at + KEY_LEN + 4;
    init_value(&mut payload[value_at..]);

    let msgs_before = c.msgs_delivered;
    let mut inflight: VecDeque<Lsn> = VecDeque::with_capacity(cfg.window);
    let mut issued = 0u64;
    let mut done = 0u64;
    let mut next_ckpt = cfg.checkpoint_every;
    let mut untimed = Duration::ZERO;
    let started = Instant::now();
    while done < cfg.commits {
        while inflight.len() < cfg.window && issued < cfg.commits {
            payload[key_at..key_at + KEY_LEN].copy_from_slice(&issued.to_be_bytes());
            fill_value(issued, &mut payload[value_at..]);
            let now = c.tick_clock();
            let lsn = c
                .core(MASTER)
                .commit(now, &payload)
                .unwrap_or_else(|e| fail(format!("commit {issued}: {e}")));
            inflight.push_back(lsn);
            issued += 1;
        }
        c.collect(MASTER);
        c.deliver_all();
        let master = &c.cores[(MASTER - 1) as usize];
        while let Some(&lsn) = inflight.front() {
            if !master.is_permanent(lsn) {
                break;
            }
            inflight.pop_front();
            done += 1;
        }
        if !inflight.is_empty() && c.queue.is_empty() {
            // Nothing left to deliver, yet commits are not permanent: stuck.
            fail(format!(
                "commit at {} is not permanent with no message in flight",
                inflight[0]
            ));
        }
        if cfg.checkpoint_every > 0 && done >= next_ckpt {
            next_ckpt += cfg.checkpoint_every;
            // The log is about to be trimmed: check what it holds first.
            let t = Instant::now();
            for (i, v) in verifiers.iter_mut().enumerate() {
                let eid = i as Eid + 2;
                v.check(eid, &c.cores[(eid - 1) as usize]);
            }
            untimed += t.elapsed();
            for core in &mut c.cores {
                core.storage_mut()
                    .checkpoint()
                    .unwrap_or_else(|e| fail(format!("checkpoint: {e}")));
            }
        }
    }
    let elapsed = started.elapsed().saturating_sub(untimed);
    let msgs = c.msgs_delivered - msgs_before;
    let peak = peak_rss_kb();

    // Every commit must be applied exactly once, in order, on both clients.
    let master_last = c.core(MASTER).storage().log().last_lsn();
    for (i, v) in verifiers.iter_mut().enumerate() {
        let eid = i as Eid + 2;
        let core = &c.cores[(eid - 1) as usize];
        if core.storage().log().last_lsn() != master_last {
            fail(format!(
                "site {eid} ends at {} but the master at {master_last}",
                core.storage().log().last_lsn()
            ));
        }
        v.check(eid, core);
        if v.seen != cfg.commits {
            fail(format!(
                "site {eid} applied {} commits, expected {}",
                v.seen, cfg.commits
            ));
        }
        let store = core.storage().store();
        if store.len() as u64 != cfg.commits {
            fail(format!(
                "site {eid} store holds {} keys, expected {}",
                store.len(),
                cfg.commits
            ));
        }
        for k in 0..cfg.commits {
            fill_value(k, &mut v.value);
            if store.get(&k.to_be_bytes()) != Some(&v.value[..]) {
                fail(format!("site {eid}: key #{k} is missing or wrong"));
            }
        }
    }

    let secs = elapsed.as_secs_f64();
    let n = cfg.commits as f64;
    let user_bytes = n * (KEY_LEN + cfg.value_size) as f64;
    let line = format!(
        "{{\"name\":\"inproc\",\"config\":{{\"value_size\":{},\"window\":{},\"commits\":{},\
         \"sites\":{},\"ack_policy\":\"quorum\"}},\"commits_per_sec\":{:.0},\
         \"ns_per_commit\":{:.1},\"msgs_per_commit\":{:.4},\"mb_per_sec\":{:.1},\
         \"peak_rss_kb\":{}}}",
        cfg.value_size,
        cfg.window,
        cfg.commits,
        SITES,
        n / secs,
        secs * 1e9 / n,
        msgs as f64 / n,
        user_bytes / secs / 1e6,
        peak
    );
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{line}")
        .and_then(|_| stdout.flush())
        .is_err()
    {
        // Whoever reads the figures stopped reading (`| head`): not a failure.
        exit(STDOUT_CLOSED);
    }
}

/// Runs every combination not fixed on the command line, `runs` times
/// over, each run in a child process of its own (this program again, with
/// the combination's options and the caller's other options), so that no
/// run starts with memory an earlier one freed: touching fresh memory is a
/// large part of a run's cost (one to three microseconds per 4 KiB page on
/// the VM these figures come from). Repeated runs take turns with the
/// other combinations, so that a noisy stretch of the machine spreads over
/// all of them.
fn run_each_in_own_process(value_size: Option<usize>, window: Option<usize>, runs: u64) {
    let exe = std::env::current_exe().unwrap_or_else(|e| fail(format!("own path: {e}")));
    let mut passed: Vec<String> = Vec::new();
    let mut given = std::env::args().skip(1);
    while let Some(a) = given.next() {
        if a == "--runs" {
            given.next();
        } else {
            passed.push(a);
        }
    }
    let combos: Vec<(usize, usize)> = value_size
        .map_or(vec![100, 4096], |v| vec![v])
        .into_iter()
        .flat_map(|v| {
            window
                .map_or(vec![1, 256], |w| vec![w])
                .into_iter()
                .map(move |w| (v, w))
        })
        .collect();
    for _ in 0..runs {
        for &(v, w) in &combos {
            let mut args = passed.clone();
            args.extend([
                "--value-size".to_string(),
                v.to_string(),
                "--window".to_string(),
                w.to_string(),
            ]);
            let status = std::process::Command::new(&exe)
                .args(&args)
                .status()
                .unwrap_or_else(|e| fail(format!("running {}: {e}", exe.display())));
            if status.code() == Some(STDOUT_CLOSED) {
                return;
            }
            if !status.success() {
                fail(format!(
                    "the run with value size {v}, window {w} failed: {status}"
                ));
            }
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("inproc") => {}
        _ => usage(),
    }
    let mut value_size: Option<usize> = None;
    let mut window: Option<usize> = None;
    let mut commits: Option<u64> = None;
    let mut checkpoint_every: Option<u64> = None;
    let mut segment_size: u32 = 4 << 20;
    let mut runs = 1;
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| fail(format!("{name} needs a number")))
        };
        match a.as_str() {
            "--value-size" => value_size = Some(num("--value-size") as usize),
            "--window" => window = Some((num("--window") as usize).max(1)),
            "--commits" => commits = Some(num("--commits").max(1)),
            "--runs" => runs = num("--runs").max(1),
            "--checkpoint-every" => checkpoint_every = Some(num("--checkpoint-every")),
            "--segment-size" => {
                segment_size = u32::try_from(num("--segment-size"))
                    .unwrap_or_else(|_| fail("--segment-size is too large"))
            }
            _ => usage(),
        }
    }
    let (Some(value_size), Some(window), 1) = (value_size, window, runs) else {
        run_each_in_own_process(value_size, window, runs);
        return;
    };
    run_inproc(&Config {
        value_size,
        window,
        commits: commits.unwrap_or_else(|| default_commits(value_size, window)),
        checkpoint_every: checkpoint_every.unwrap_or_else(|| default_checkpoint_every(value_size)),
        segment_size,
    });
}

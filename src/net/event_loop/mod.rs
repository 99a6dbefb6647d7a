//! The event loop thread: one `mio` poll owns the listener and every
//! connection. It dials peers (with back-off), accepts, runs the handshake,
//! resolves duplicate connections, cuts frames out of what it reads and
//! hands messages to the worker, and writes each peer's queue with one
//! vectored write per readiness.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Poll, Token};

use crate::membership::Membership;
use crate::net::backoff::Backoff;
use crate::net::frame::{FrameReader, Hello};
use crate::net::shared::{Link, Shared};
use crate::net::worker::Work;
use crate::rep::Eid;

mod dials;
mod links;
mod stream;

pub(crate) const LISTENER: Token = Token(0);
pub(crate) const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;
/// Bytes asked of one `read`.
const READ_CHUNK: usize = 64 << 10;
/// Most buffers in one vectored write.
const MAX_IOV: usize = 256;

/// Requests to the event loop (each followed by a wake-up).
#[derive(Debug)]
pub(crate) enum LoopCmd {
    AddPeer(SocketAddr),
    /// The group this site knows (replicated membership): connect to
    /// every member, drop sites that left it.
    Group(Membership),
}

/// A place to dial, from the configuration, a hello or a `NEWSITE`.
struct Dial {
    addr: SocketAddr,
    /// Learned from the hello of a connection to `addr`.
    eid: Option<Eid>,
    conn: Option<Token>,
    next_attempt: Instant,
    backoff: Backoff,
    /// The site left the group: no longer dialled (kept, as connections
    /// refer to dials by index).
    dropped: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Close {
    /// A protocol or stream failure: reported as a disconnection.
    Failed(String),
    /// A bad frame or handshake from the peer: counted, reported.
    Rejected(String),
    /// A second connection to a peer we keep another one to.
    Duplicate,
    /// The host stops.
    Shutdown,
    /// The peer (or this site) left the replicated group: reported as a
    /// disconnection, but not a reason for an election.
    Left(String),
}

struct Conn {
    stream: TcpStream,
    remote: SocketAddr,
    /// The dial entry this connection came from; `None` when accepted.
    dial: Option<usize>,
    /// Set once an outgoing connect has completed.
    connected: bool,
    hello: Option<Hello>,
    link: Option<Arc<Link>>,
    reader: FrameReader,
    /// Frames taken from the link (or the hello) and not yet fully written,
    /// each with whether it counts in the link's queue.
    out: VecDeque<(Arc<Vec<u8>>, bool)>,
    out_off: usize,
    /// Handshake deadline, until the peer's hello arrives.
    deadline: Option<Instant>,
    read_blocked: bool,
    /// The peer's end of stream was signalled: read until it, not just until a short read.
    hup: bool,
}

pub(crate) struct EventLoop {
    pub poll: Poll,
    pub listener: TcpListener,
    pub shared: Arc<Shared>,
    pub cmds: Receiver<LoopCmd>,
    pub work: Sender<Work>,
    pub hello: Hello,
    pub handshake_timeout: Duration,
    pub connect_retry: (Duration, Duration),
    pub max_connections: usize,
    pub seed: u64,
    dials: Vec<Dial>,
    conns: HashMap<Token, Conn>,
    by_eid: HashMap<Eid, Token>,
    next_token: usize,
    /// The members of the group last told of (replicated membership).
    group: Option<BTreeSet<Eid>>,
    /// Sites that left the group and are not members again: not dialled.
    departed: BTreeSet<Eid>,
}

impl EventLoop {
    pub fn new(
        poll: Poll,
        listener: TcpListener,
        shared: Arc<Shared>,
        cmds: Receiver<LoopCmd>,
        work: Sender<Work>,
        hello: Hello,
        cfg: &crate::net::NetConfig,
    ) -> EventLoop {
        let seed = crate::net::backoff::seed(cfg.eid);
        let mut l = EventLoop {
            poll,
            listener,
            shared,
            cmds,
            work,
            hello,
            handshake_timeout: cfg.handshake_timeout,
            connect_retry: (cfg.connect_retry_min, cfg.connect_retry_max),
            max_connections: cfg.max_connections,
            seed,
            dials: Vec::new(),
            conns: HashMap::new(),
            by_eid: HashMap::new(),
            next_token: FIRST_CONN,
            group: None,
            departed: BTreeSet::new(),
        };
        for &addr in &cfg.peers {
            l.add_dial(addr, None, false);
        }
        l
    }

    pub fn run(mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = self
                .next_timer()
                .map(|t| t.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("network event loop poll: {e}");
                    break;
                }
            }
            if self.shared.stopped.load(Ordering::Acquire) {
                break;
            }
            let mut woken = false;
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => woken = true,
                    t => self.conn_event(
                        t,
                        ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                        ev.is_writable() || ev.is_write_closed() || ev.is_error(),
                        ev.is_read_closed() || ev.is_error(),
                    ),
                }
            }
            if woken {
                self.woken();
            }
            self.timers();
        }
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for t in tokens {
            self.close(t, Close::Shutdown);
        }
    }

    pub(super) fn frozen(&self) -> bool {
        self.shared.frozen.load(Ordering::Acquire)
    }

    fn next_timer(&self) -> Option<Instant> {
        let dials = self
            .dials
            .iter()
            .filter(|d| self.wants_dial(d))
            .map(|d| d.next_attempt);
        let handshakes = self.conns.values().filter_map(|c| c.deadline);
        dials.chain(handshakes).min()
    }

    fn timers(&mut self) {
        let now = Instant::now();
        let expired: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|d| d <= now))
            .map(|(t, _)| *t)
            .collect();
        for t in expired {
            self.shared
                .site
                .handshake_timeouts
                .fetch_add(1, Ordering::Relaxed);
            let outgoing = self.conns.get(&t).is_some_and(|c| c.dial.is_some());
            let why = if outgoing {
                Close::Failed("connect or handshake timed out".into())
            } else {
                Close::Rejected("the handshake did not complete in time".into())
            };
            self.close(t, why);
        }
        for i in 0..self.dials.len() {
            if self.wants_dial(&self.dials[i]) && self.dials[i].next_attempt <= now {
                self.dial(i);
            }
        }
    }

    fn woken(&mut self) {
        // Clear first: a send after this point wakes the loop again.
        self.shared.wake_pending.store(false, Ordering::Release);
        let mut groups = Vec::new();
        while let Ok(cmd) = self.cmds.try_recv() {
            match cmd {
                LoopCmd::AddPeer(addr) => self.add_dial(addr, None, true),
                LoopCmd::Group(g) => groups.push(g),
            }
        }
        let resume = !self.frozen()
            && self.shared.reads_paused.load(Ordering::Acquire)
            && self.shared.inbound.load(Ordering::Acquire) <= self.shared.max_inbound / 2;
        if resume {
            self.shared.reads_paused.store(false, Ordering::Release);
        }
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for t in tokens {
            let blocked = self.conns.get(&t).is_some_and(|c| c.read_blocked);
            if blocked && !self.frozen() && !self.shared.reads_paused.load(Ordering::Acquire) {
                self.read(t);
            }
            self.flush(t);
        }
        // After the flush: what was queued before the change (the record
        // removing a site, to that site) is on its way before its
        // connection closes.
        for g in groups {
            self.group_changed(g);
        }
    }
}

//! The event loop thread: one `mio` poll owns the listener and every
//! connection. It dials peers (with back-off), accepts, runs the handshake,
//! resolves duplicate connections, cuts frames out of what it reads and
//! hands messages to the worker, and writes each peer's queue with one
//! vectored write per readiness.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::membership::Membership;
use crate::net::backoff::Backoff;
use crate::net::elector::ElectCmd;
use crate::net::frame::{encode_hello, Frame, FrameError, FrameReader, Hello, HEADER_LEN};
use crate::net::shared::{Link, NetEvent, Shared};
use crate::net::worker::Work;
use crate::rep::Eid;

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
    pub elector: Sender<ElectCmd>,
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
}

impl EventLoop {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        poll: Poll,
        listener: TcpListener,
        shared: Arc<Shared>,
        cmds: Receiver<LoopCmd>,
        work: Sender<Work>,
        elector: Sender<ElectCmd>,
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
            elector,
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
        };
        for &addr in &cfg.peers {
            l.add_dial(addr, None, false);
        }
        l
    }

    /// Adds a place to dial. `revive`: a dial dropped when its site left
    /// the group is dialled again (the site is a member again); a hello
    /// from a departed site does not revive it.
    fn add_dial(&mut self, addr: SocketAddr, eid: Option<Eid>, revive: bool) {
        if addr == self.hello.addr {
            return;
        }
        if let Some(d) = self.dials.iter_mut().find(|d| d.addr == addr) {
            if revive && d.dropped {
                d.dropped = false;
                d.eid = eid.or(d.eid);
                d.next_attempt = Instant::now();
                d.backoff.reset();
            } else {
                d.eid = d.eid.or(eid);
            }
            return;
        }
        self.seed = self.seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        self.dials.push(Dial {
            addr,
            eid,
            conn: None,
            next_attempt: Instant::now(),
            backoff: Backoff::new(self.connect_retry.0, self.connect_retry.1, self.seed),
            dropped: false,
        });
    }

    /// The group this site knows changed: dial every member whose address
    /// is a socket address; stop dialling and close the connections of
    /// sites that were members and are no longer. A site that finds itself
    /// removed drops every peer. Seed peers and sites that are not members
    /// (joiners on their way in) are left alone.
    fn group_changed(&mut self, g: Membership) {
        let local = self.shared.local_eid;
        let now: BTreeSet<Eid> = g.members().iter().map(|m| m.eid).collect();
        let before = self.group.replace(now.clone()).unwrap_or_default();
        for m in g.members() {
            if m.eid == local {
                continue;
            }
            let addr = std::str::from_utf8(&m.addr)
                .ok()
                .and_then(|a| a.parse::<SocketAddr>().ok());
            match addr {
                Some(addr) => self.add_dial(addr, Some(m.eid), true),
                None => log::debug!(
                    "site {local}: member {} has no socket address ({:?}); not dialled",
                    m.eid,
                    String::from_utf8_lossy(&m.addr)
                ),
            }
        }
        if before.contains(&local) && !now.contains(&local) {
            log::info!("site {local}: removed from the group; dropping every peer");
            for d in &mut self.dials {
                d.dropped = true;
            }
            let tokens: Vec<Token> = self.conns.keys().copied().collect();
            for t in tokens {
                self.close(t, Close::Left("this site left the group".into()));
            }
            return;
        }
        for gone in before.difference(&now).copied() {
            if gone == local {
                continue;
            }
            log::info!("site {local}: site {gone} left the group; dropping it");
            for d in self.dials.iter_mut().filter(|d| d.eid == Some(gone)) {
                d.dropped = true;
            }
            let tokens: Vec<Token> = self
                .conns
                .iter()
                .filter(|(_, c)| c.hello.as_ref().is_some_and(|h| h.eid == gone))
                .map(|(t, _)| *t)
                .collect();
            for t in tokens {
                self.close(t, Close::Left(format!("site {gone} left the group")));
            }
        }
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

    fn frozen(&self) -> bool {
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

    fn wants_dial(&self, d: &Dial) -> bool {
        d.conn.is_none() && !d.dropped && !d.eid.is_some_and(|e| self.by_eid.contains_key(&e))
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

    fn register(&mut self, mut stream: TcpStream, remote: SocketAddr, dial: Option<usize>) {
        let token = Token(self.next_token);
        self.next_token += 1;
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("registering a connection with {remote}: {e}");
            if let Some(i) = dial {
                self.retry_later(i);
            }
            return;
        }
        let mut conn = Conn {
            stream,
            remote,
            dial,
            connected: dial.is_none(),
            hello: None,
            link: None,
            reader: FrameReader::new(self.shared.max_frame - HEADER_LEN),
            out: VecDeque::new(),
            out_off: 0,
            deadline: Some(Instant::now() + self.handshake_timeout),
            read_blocked: false,
            hup: false,
        };
        conn.out
            .push_back((Arc::new(encode_hello(&self.hello)), false));
        if conn.connected {
            let _ = conn.stream.set_nodelay(true);
        }
        if let Some(i) = dial {
            self.dials[i].conn = Some(token);
        }
        self.conns.insert(token, conn);
        self.shared
            .site
            .connections
            .store(self.conns.len() as u64, Ordering::Relaxed);
        if dial.is_none() {
            self.flush(token);
        }
    }

    fn dial(&mut self, i: usize) {
        let addr = self.dials[i].addr;
        if self.conns.len() >= self.max_connections {
            self.retry_later(i);
            return;
        }
        log::debug!("site {}: connecting to {addr}", self.shared.local_eid);
        match TcpStream::connect(addr) {
            Ok(stream) => self.register(stream, addr, Some(i)),
            Err(e) => {
                log::debug!("connecting to {addr}: {e}");
                self.retry_later(i);
            }
        }
    }

    fn retry_later(&mut self, i: usize) {
        let d = &mut self.dials[i];
        d.conn = None;
        d.next_attempt = Instant::now() + d.backoff.next_wait();
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, remote)) => {
                    if self.conns.len() >= self.max_connections {
                        self.shared
                            .site
                            .refused_connections
                            .fetch_add(1, Ordering::Relaxed);
                        log::warn!("refusing a connection from {remote}: too many connections");
                        continue;
                    }
                    log::debug!("site {}: accepted {remote}", self.shared.local_eid);
                    self.register(stream, remote, None);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("accept: {e}");
                    return;
                }
            }
        }
    }

    fn conn_event(&mut self, t: Token, readable: bool, writable: bool, hup: bool) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        c.hup |= hup;
        if !c.connected && writable {
            if let Ok(Some(e)) | Err(e) = c.stream.take_error() {
                let why = format!("connect to {} failed: {e}", c.remote);
                return self.close(t, Close::Failed(why));
            }
            match c.stream.peer_addr() {
                Ok(_) => {
                    c.connected = true;
                    let _ = c.stream.set_nodelay(true);
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    let why = format!("connect to {} failed: {e}", c.remote);
                    return self.close(t, Close::Failed(why));
                }
            }
        }
        if readable {
            if self.frozen() || self.shared.reads_paused.load(Ordering::Acquire) {
                if let Some(c) = self.conns.get_mut(&t) {
                    c.read_blocked = true;
                }
            } else {
                self.read(t);
            }
        }
        if writable {
            self.flush(t);
        }
    }

    /// Reads what the socket holds and handles the frames in it.
    fn read(&mut self, t: Token) {
        loop {
            let Some(c) = self.conns.get_mut(&t) else {
                return;
            };
            c.read_blocked = false;
            let spare = c.reader.spare(READ_CHUNK);
            let n = match c.stream.read(spare) {
                Ok(0) => {
                    c.reader.filled(READ_CHUNK, 0);
                    return self.close(t, Close::Failed("the peer closed the connection".into()));
                }
                Ok(n) => n,
                Err(e) => {
                    c.reader.filled(READ_CHUNK, 0);
                    match e.kind() {
                        io::ErrorKind::WouldBlock => return,
                        io::ErrorKind::Interrupted => continue,
                        _ => return self.close(t, Close::Failed(format!("read: {e}"))),
                    }
                }
            };
            c.reader.filled(READ_CHUNK, n);
            if let Some(counters) = c.link.as_ref().map(|l| l.counters.clone()) {
                counters
                    .bytes_received
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
            loop {
                let Some(c) = self.conns.get_mut(&t) else {
                    return;
                };
                match c.reader.next_frame() {
                    Ok(None) => break,
                    Ok(Some(frame)) => {
                        if !self.frame(t, frame) {
                            return;
                        }
                    }
                    Err(e) => return self.bad_frame(t, e),
                }
            }
            if self.shared.reads_paused.load(Ordering::Acquire) {
                if let Some(c) = self.conns.get_mut(&t) {
                    c.read_blocked = true;
                }
                return;
            }
            // Edge-triggered: a short read drained the socket; more data
            // brings a new event, so no second `read` to see WouldBlock. An
            // end of stream that came with the data brings none: read on to it.
            if n < READ_CHUNK && !self.conns.get(&t).is_some_and(|c| c.hup) {
                return;
            }
        }
    }

    fn bad_frame(&mut self, t: Token, e: FrameError) {
        self.shared.site.bad_frames.fetch_add(1, Ordering::Relaxed);
        self.close(t, Close::Rejected(e.to_string()));
    }

    /// Handles one frame; false when the connection was closed.
    fn frame(&mut self, t: Token, frame: Frame) -> bool {
        let c = self.conns.get_mut(&t).expect("caller checked");
        match frame {
            Frame::Hello(h) => {
                if c.hello.is_some() {
                    self.shared.site.bad_frames.fetch_add(1, Ordering::Relaxed);
                    self.close(t, Close::Rejected("a second hello".into()));
                    return false;
                }
                self.hello_received(t, h)
            }
            Frame::Msg { body, control_len } => {
                let Some(eid) = c.hello.as_ref().map(|h| h.eid) else {
                    self.shared.site.bad_frames.fetch_add(1, Ordering::Relaxed);
                    self.close(t, Close::Rejected("a message before the handshake".into()));
                    return false;
                };
                // Also from a parked duplicate: the peer may not have switched yet.
                if let Some(link) = &c.link {
                    link.counters
                        .frames_received
                        .fetch_add(1, Ordering::Relaxed);
                }
                let len = body.len();
                let inbound = self.shared.inbound.fetch_add(len, Ordering::SeqCst) + len;
                if inbound > self.shared.max_inbound
                    && !self.shared.reads_paused.swap(true, Ordering::SeqCst)
                {
                    self.shared.site.read_pauses.fetch_add(1, Ordering::Relaxed);
                    log::debug!(
                        "site {}: {inbound} bytes unprocessed; reads paused",
                        self.shared.local_eid
                    );
                    // The worker may have drained the backlog before it could
                    // see the flag (it wakes us only when it sees it).
                    if self.shared.inbound.load(Ordering::SeqCst) <= self.shared.max_inbound / 2 {
                        self.shared.reads_paused.store(false, Ordering::SeqCst);
                    }
                }
                let _ = self.work.send(Work::Msg {
                    eid,
                    body,
                    control_len,
                });
                true
            }
        }
    }

    fn hello_received(&mut self, t: Token, h: Hello) -> bool {
        let local = self.shared.local_eid;
        if h.eid == local {
            self.shared.site.bad_frames.fetch_add(1, Ordering::Relaxed);
            let dial = self.conns.get(&t).and_then(|c| c.dial);
            self.close(
                t,
                Close::Rejected(format!("the peer claims our own eid {local}")),
            );
            if let Some(i) = dial {
                // Probably our own address: stop dialling it.
                self.dials[i].next_attempt = Instant::now() + Duration::from_secs(3600);
            }
            return false;
        }
        let c = self.conns.get_mut(&t).expect("caller checked");
        c.deadline = None;
        c.hello = Some(h.clone());
        let outgoing = c.dial.is_some();
        if let Some(i) = c.dial {
            self.dials[i].eid = Some(h.eid);
        } else {
            self.add_dial(h.addr, Some(h.eid), false);
        }
        if let Some(&old) = self.by_eid.get(&h.eid) {
            let old_conn = &self.conns[&old];
            let restarted = old_conn.hello.as_ref().map(|o| o.instance) != Some(h.instance);
            // Both ends keep the connection the smaller eid dialled, so two
            // sites dialling each other settle on the same one.
            let new_dialler = if outgoing { local } else { h.eid };
            let old_dialler = if old_conn.dial.is_some() {
                local
            } else {
                h.eid
            };
            let keeper = local.min(h.eid);
            let replace = restarted || (new_dialler == keeper && old_dialler != keeper);
            if !replace {
                log::debug!(
                    "site {local}: duplicate connection to {}; keeping the first",
                    h.eid
                );
                // The loser is closed by the site that dialled it; the other
                // parks it, as that site may still be sending on it.
                if outgoing {
                    self.close(t, Close::Duplicate);
                    return false;
                }
                return true;
            }
            log::debug!(
                "site {local}: connection to {} replaces an older one",
                h.eid
            );
            let carried = self.take_unstarted(old);
            // Establish first, so closing the old one finds its successor in place.
            self.establish(t, &h, carried);
            let old_outgoing = self.conns.get(&old).is_some_and(|c| c.dial.is_some());
            if restarted || old_outgoing {
                self.close(old, Close::Duplicate);
            } else {
                self.park(old);
            }
            return self.conns.contains_key(&t);
        }
        self.establish(t, &h, Vec::new());
        true
    }

    /// Stops using a connection for sending without closing it.
    fn park(&mut self, t: Token) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        if let Some(link) = c.link.take() {
            // What is left (a frame begun) no longer counts in any queue.
            let (mut bytes, mut frames) = (0, 0);
            for (f, counted) in c.out.iter_mut() {
                if *counted {
                    bytes += f.len();
                    frames += 1;
                    *counted = false;
                }
            }
            link.written(bytes, frames);
            if self.by_eid.get(&link.eid) == Some(&t) {
                self.by_eid.remove(&link.eid);
                self.shared.links.write().remove(&link.eid);
            }
            link.closed.store(true, Ordering::Release);
        }
    }

    /// A parked connection to `eid`, to take over when its link closes.
    fn parked(&self, eid: Eid) -> Option<Token> {
        self.conns
            .iter()
            .find(|(_, c)| c.link.is_none() && c.hello.as_ref().is_some_and(|h| h.eid == eid))
            .map(|(t, _)| *t)
    }

    /// Whole frames an old connection never began to write, to move to its replacement.
    fn take_unstarted(&mut self, t: Token) -> Vec<Arc<Vec<u8>>> {
        let Some(c) = self.conns.get_mut(&t) else {
            return Vec::new();
        };
        let Some(link) = c.link.clone() else {
            return Vec::new();
        };
        let skip = usize::from(c.out_off > 0);
        let mut frames: Vec<Arc<Vec<u8>>> = Vec::new();
        let mut kept = VecDeque::new();
        for (i, (f, counted)) in c.out.drain(..).enumerate() {
            if i < skip || !counted {
                kept.push_back((f, counted));
            } else {
                frames.push(f);
            }
        }
        c.out = kept;
        frames.extend(link.queue.lock().drain(..));
        let bytes: usize = frames.iter().map(|f| f.len()).sum();
        link.written(bytes, frames.len());
        frames
    }

    fn establish(&mut self, t: Token, h: &Hello, carried: Vec<Arc<Vec<u8>>>) {
        let eid = h.eid;
        self.shared
            .peer_hellos
            .write()
            .insert(eid, (h.addr, h.app_data.clone()));
        let counters = self.shared.counters_for(eid);
        counters.connects.fetch_add(1, Ordering::Relaxed);
        let link = Arc::new(Link::new(eid, counters));
        {
            let mut q = link.queue.lock();
            let bytes: usize = carried.iter().map(|f| f.len()).sum();
            link.queued.fetch_add(bytes, Ordering::AcqRel);
            link.frames.fetch_add(carried.len(), Ordering::Relaxed);
            q.extend(carried);
        }
        self.shared.links.write().insert(eid, link.clone());
        self.by_eid.insert(eid, t);
        let c = self.conns.get_mut(&t).expect("caller checked");
        c.link = Some(link);
        let remote = c.remote;
        if let Some(i) = c.dial {
            self.dials[i].backoff.reset();
        }
        log::info!(
            "site {}: connected to site {eid} at {remote}",
            self.shared.local_eid
        );
        self.shared.emit(NetEvent::PeerConnected {
            eid,
            addr: remote,
            advertised: h.addr,
            app_data: h.app_data.clone(),
        });
        let _ = self.work.send(Work::PeerUp(eid));
        self.flush(t);
    }

    /// Writes what is queued for the connection: one vectored write, and
    /// another only if the first took everything and more is queued.
    fn flush(&mut self, t: Token) {
        if self.frozen() {
            return;
        }
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        if !c.connected {
            return;
        }
        if let Some(link) = &c.link {
            let mut q = link.queue.lock();
            c.out.extend(q.drain(..).map(|f| (f, true)));
        }
        while !c.out.is_empty() {
            let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(c.out.len().min(MAX_IOV));
            for (i, (f, _)) in c.out.iter().take(MAX_IOV).enumerate() {
                let start = if i == 0 { c.out_off } else { 0 };
                iov.push(IoSlice::new(&f[start..]));
            }
            let want: usize = iov.iter().map(|s| s.len()).sum();
            match c.stream.write_vectored(&iov) {
                Ok(n) => {
                    let (bytes, frames) = advance(&mut c.out, &mut c.out_off, n);
                    if let Some(link) = &c.link {
                        link.written(bytes, frames);
                        link.counters
                            .bytes_sent
                            .fetch_add(n as u64, Ordering::Relaxed);
                        link.counters
                            .frames_sent
                            .fetch_add(frames as u64, Ordering::Relaxed);
                    }
                    if n < want {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.close(t, Close::Failed(format!("write: {e}"))),
            }
        }
    }

    fn close(&mut self, t: Token, why: Close) {
        let Some(mut c) = self.conns.remove(&t) else {
            return;
        };
        self.shared
            .site
            .connections
            .store(self.conns.len() as u64, Ordering::Relaxed);
        let _ = self.poll.registry().deregister(&mut c.stream);
        let local = self.shared.local_eid;
        if let Some(link) = &c.link {
            if self.by_eid.get(&link.eid) == Some(&t) {
                self.by_eid.remove(&link.eid);
                self.shared.links.write().remove(&link.eid);
            }
            link.closed.store(true, Ordering::Release);
            let _guard = link.queue.lock();
            link.queued.store(0, Ordering::Release);
            link.frames.store(0, Ordering::Relaxed);
            let successor = if self.by_eid.contains_key(&link.eid)
                || matches!(why, Close::Shutdown | Close::Left(_))
            {
                None
            } else {
                self.parked(link.eid)
            };
            if let Some(next) = successor {
                log::debug!(
                    "site {local}: the connection to {} closed; a parked one takes over",
                    link.eid
                );
                let hello = self.conns[&next]
                    .hello
                    .clone()
                    .expect("parked after its hello");
                self.establish(next, &hello, Vec::new());
            } else if let Close::Failed(reason) | Close::Rejected(reason) | Close::Left(reason) =
                &why
            {
                let reason = reason.clone();
                log::info!(
                    "site {local}: disconnected from site {}: {reason}",
                    link.eid
                );
                self.shared.emit(NetEvent::PeerDisconnected {
                    eid: link.eid,
                    reason,
                });
                if !matches!(why, Close::Left(_)) {
                    let _ = self.elector.send(ElectCmd::LostPeer(link.eid));
                }
            }
        } else if let Close::Rejected(reason) = &why {
            log::warn!(
                "site {local}: connection from {} rejected: {reason}",
                c.remote
            );
            self.shared.emit(NetEvent::ConnectionRejected {
                addr: c.remote,
                reason: reason.clone(),
            });
        } else if let Close::Failed(reason) = &why {
            log::debug!(
                "site {local}: connection with {} closed: {reason}",
                c.remote
            );
        }
        if let Some(i) = c.dial {
            if why != Close::Shutdown {
                self.retry_later(i);
            }
        }
    }
}

/// Drops `n` written bytes from the front of `out`; returns the bytes and
/// the number of counted frames that were completed.
fn advance(
    out: &mut VecDeque<(Arc<Vec<u8>>, bool)>,
    off: &mut usize,
    mut n: usize,
) -> (usize, usize) {
    let (mut bytes, mut frames) = (0, 0);
    while n > 0 {
        let Some((f, counted)) = out.front() else {
            break;
        };
        let left = f.len() - *off;
        if n < left {
            *off += n;
            break;
        }
        n -= left;
        if *counted {
            bytes += f.len();
            frames += 1;
        }
        *off = 0;
        out.pop_front();
    }
    (bytes, frames)
}

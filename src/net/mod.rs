//! A ready-made network host: sockets, threads and elections for an
//! [`Env`] (the role Berkeley DB's Replication Manager plays).
//!
//! [`Net`] drives an `Env` through the same public calls any host uses:
//! it sets the transport and the event handler, starts the site, hands
//! every message that arrives to [`Env::rep_process_message`], calls
//! [`Env::rep_tick`] when its deadline comes, and holds elections.
//!
//! Threads: one `mio` event loop owns the listener and every connection;
//! one worker processes messages in arrival order and ticks; one election
//! thread runs [`Env::rep_elect`], which blocks. The `Env`'s send callback
//! only queues a frame for the peer's connection (bounded in bytes, see
//! [`NetConfig::max_queue_bytes`]) and wakes the loop, so a committing
//! thread never waits on a socket.
//!
//! # Three sites
//!
//! ```
//! use std::time::{Duration, Instant};
//! use dbrep::net::{Net, NetConfig};
//! use dbrep::{Env, EnvConfig, Role, StartAs};
//!
//! # fn main() -> dbrep::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let mut env_config = EnvConfig::default();
//! env_config.rep.nsites = 3;
//!
//! // Bind every site first, so each knows the others' addresses.
//! let mut sites = Vec::new();
//! for eid in 1..=3 {
//!     let env = Env::open(dir.path().join(format!("site{eid}")), env_config.clone())?;
//!     let mut config = NetConfig::new(eid, "127.0.0.1:0".parse().unwrap());
//!     // Site 1 starts as master; the others as clients. With every site a
//!     // client, they would elect a master by themselves.
//!     if eid == 1 {
//!         config.start_as = StartAs::Master;
//!     }
//!     sites.push((env.clone(), Net::new(env, config)?));
//! }
//! let addrs: Vec<_> = sites.iter().map(|(_, net)| net.local_addr()).collect();
//! for (i, (_, net)) in sites.iter().enumerate() {
//!     for (j, addr) in addrs.iter().enumerate() {
//!         if i != j {
//!             net.add_peer(*addr)?;
//!         }
//!     }
//!     net.start()?;
//! }
//!
//! // Commit on the master; the commit is permanent once a client has it too.
//! let master = &sites[0].0;
//! let deadline = Instant::now() + Duration::from_secs(60);
//! loop {
//!     let mut txn = master.txn();
//!     txn.put(b"colour", b"blue");
//!     if txn.commit()?.permanent {
//!         break;
//!     }
//!     // The first commits can race the clients' connections.
//!     assert!(Instant::now() < deadline, "no client acknowledged");
//! }
//! // Wait for the clients to apply it.
//! for (env, _) in &sites[1..] {
//!     while env.get(b"colour")? != Some(b"blue".to_vec()) {
//!         assert!(Instant::now() < deadline, "a client did not catch up");
//!         std::thread::sleep(Duration::from_millis(10));
//!     }
//!     assert_eq!(env.role(), Role::Client);
//! }
//! println!("{:?}", sites[0].1.stats());
//! for (_, net) in &sites {
//!     net.stop()?; // closes every socket and joins every thread (Drop does too)
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Reactions
//!
//! The host reacts to what `rep_process_message` and `rep_tick` return as
//! the Berkeley DB documentation tells a host to: `HoldElection` → an
//! election; `NewSite` → connect to the address the new site advertised
//! (its `cdata`); `DupMaster` → restart as client, then elect; a won
//! election → `rep_start(MASTER)`; `JoinFailure` → [`NetEvent::JoinFailure`].
//! [`NetConfig::status_hook`] sees every status first and may replace the
//! default.
//!
//! # Replicated group membership
//!
//! When the `Env` has [`ConfigFlag::GroupMembership`] on, the host
//! advertises its [`Net::advertised_addr`] as the site's address in the
//! group (`rep_set_local_addr`, at start, unless the application set one:
//! [`Env::rep_local_addr`] not empty; the host forgets an address it set
//! when it stops) and sets no `nsites`: the group's size is the log's. At
//! start (from [`Env::rep_known_members`]) and on every
//! [`Event::GroupChanged`] it dials each member whose address parses as a
//! socket address, and closes the connections of sites that were members
//! and are no longer ([`NetEvent::PeerDisconnected`], no election). A site
//! that finds itself removed drops every peer. Configured and added peers
//! are dialled as before, so a new site needs only one member's address to
//! join; connections from sites that are not members (joiners) are kept.
//!
//! # Elections
//!
//! With [`NetConfig::auto_elections`] (the default) a client that hears of
//! no master within [`NetConfig::initial_election_wait`] holds an election,
//! so does one whose master's connection closes or whose heartbeat monitor
//! fires (set [`TimeoutKind::HeartbeatSend`](crate::TimeoutKind::HeartbeatSend)
//! and [`TimeoutKind::HeartbeatMonitor`](crate::TimeoutKind::HeartbeatMonitor)
//! to detect a master that hangs with its connections open), and a failed
//! election is retried with back-off. Turned off, the host only reports
//! [`NetEvent::ElectionNeeded`] and the application calls [`Net::elect`].
//!
//! # Cost of a commit
//!
//! A commit through the host costs, on the master, the log write and fsync,
//! one wake-up of the event loop (an `eventfd` write, skipped when one is
//! already pending), one vectored write per client, and for each
//! acknowledgement a poll wake-up and one read. Sockets have `TCP_NODELAY`
//! set, so no commit waits for Nagle's algorithm.
//!
//! Measured with `strace -c -f` on `examples/net_commits.rs` (three sites
//! in one process, fsync at every commit, 2,000 commits, set-up subtracted),
//! per commit for the three sites together: 3 `pwrite64` + 3 `fdatasync`
//! (one per site), 4 `writev` (the record to two clients, two acks), 4
//! `recvfrom`, 3 `write` (event-loop wake-ups), about 7 `epoll_wait` and
//! 6–7 `futex` (thread hand-offs), plus 8–13 `sched_yield` that
//! crossbeam-channel's blocking receive spends before it parks: about 40
//! in all (not split by site: the three share one process).

mod backoff;
mod config;
mod control;
mod elector;
mod event_loop;
#[cfg(feature = "testing")]
pub mod frame;
private_modules!(frame);
mod shared;
mod worker;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use mio::net::TcpListener;
use mio::{Interest, Poll, Waker};
use parking_lot::{Mutex, RwLock};

pub use self::config::{NetConfig, Reaction, StatusHook};
pub use self::control::NetControl;
pub use self::frame::MAX_APP_DATA;
pub use self::shared::{NetEvent, NetStats, PeerInfo, PeerStats};

use self::elector::{ElectCmd, Elector};
use self::event_loop::{EventLoop, LoopCmd, LISTENER, WAKER};
use self::frame::{Hello, HEADER_LEN};
use self::shared::{Shared, SiteCounters};
use self::worker::{Work, Worker};
use crate::env::{Env, SendError};
use crate::error::{Error, Result};
use crate::rep::{ConfigFlag, Eid, Event, Role};

enum State {
    Ready { poll: Poll, listener: TcpListener },
    Running(Running),
    Stopped,
}

struct Running {
    threads: Vec<JoinHandle<()>>,
    /// The group address this host set for the site (the application had
    /// set none), forgotten at stop so a later host advertises its own.
    set_addr: Option<Vec<u8>>,
    work: Sender<Work>,
    elector: Sender<ElectCmd>,
    ctl: NetControl,
}

/// A network host for one site. See the [module documentation](self).
pub struct Net {
    env: Env,
    config: NetConfig,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    events: Receiver<NetEvent>,
    cmds: (Sender<LoopCmd>, Receiver<LoopCmd>),
    /// Peers added before start: they count towards the default `nsites`.
    added_peers: Mutex<Vec<SocketAddr>>,
    state: Mutex<State>,
}

impl Net {
    /// Binds the listening socket (nothing else runs until [`Net::start`]).
    pub fn new(env: Env, config: NetConfig) -> Result<Net> {
        if config.eid < 0 {
            return Err(Error::invalid(format!(
                "a site's eid must be >= 0, got {}",
                config.eid
            )));
        }
        if config.app_data.len() > MAX_APP_DATA {
            return Err(Error::invalid(format!(
                "app_data holds {} bytes; the handshake carries at most {MAX_APP_DATA}",
                config.app_data.len()
            )));
        }
        let net_err = |op, e| Error::io(op, config.listen.to_string(), e);
        let listener = TcpListener::bind(config.listen).map_err(|e| net_err("bind", e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| net_err("local_addr", e))?;
        let poll = Poll::new().map_err(|e| net_err("create poll", e))?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(|e| net_err("create waker", e))?;
        let (events_tx, events) = crossbeam_channel::bounded(config.event_capacity.max(1));
        let shared = Arc::new(Shared {
            local_eid: config.eid,
            links: RwLock::default(),
            counters: Mutex::default(),
            peer_hellos: RwLock::default(),
            site: SiteCounters::default(),
            waker,
            wake_pending: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            frozen: AtomicBool::new(false),
            max_queue: config.max_queue_bytes,
            max_frame: config.max_frame_bytes + HEADER_LEN,
            inbound: AtomicUsize::new(0),
            max_inbound: config.max_inbound_bytes.max(config.max_frame_bytes),
            reads_paused: AtomicBool::new(false),
            events: events_tx,
            elected: AtomicBool::new(false),
        });
        Ok(Net {
            env,
            config,
            local_addr,
            shared,
            events,
            cmds: crossbeam_channel::unbounded(),
            added_peers: Mutex::new(Vec::new()),
            state: Mutex::new(State::Ready { poll, listener }),
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address peers are told to connect back to.
    pub fn advertised_addr(&self) -> SocketAddr {
        self.config.advertise.unwrap_or(self.local_addr)
    }

    /// The environment this host serves.
    pub fn env(&self) -> &Env {
        &self.env
    }

    /// The host's events. Every clone of the receiver takes from the same
    /// channel; events nobody collects are dropped once it is full.
    pub fn events(&self) -> Receiver<NetEvent> {
        self.events.clone()
    }

    /// Adds a site to connect to (before or after start).
    pub fn add_peer(&self, addr: SocketAddr) -> Result<()> {
        match &*self.state.lock() {
            State::Ready { .. } => {
                let mut added = self.added_peers.lock();
                if !added.contains(&addr) && !self.config.peers.contains(&addr) {
                    added.push(addr);
                }
            }
            State::Running(_) => {}
            State::Stopped => return Err(Error::invalid("the network host has stopped")),
        }
        self.cmds
            .0
            .send(LoopCmd::AddPeer(addr))
            .map_err(|_| Error::invalid("the network host has stopped"))?;
        self.shared.wake();
        Ok(())
    }

    /// Starts the host: sets the `Env`'s transport and event handler,
    /// starts the threads and calls `rep_start` as configured. Starting
    /// twice, or after [`Net::stop`], is an error. When the `Env` has no
    /// `nsites` set, it becomes the number of peers configured or added, plus
    /// one; with [`ConfigFlag::GroupMembership`] none is set (the group is
    /// the log's) and the site's group address becomes
    /// [`Net::advertised_addr`].
    pub fn start(&self) -> Result<()> {
        let mut state = self.state.lock();
        let (poll, mut listener) = match std::mem::replace(&mut *state, State::Stopped) {
            State::Ready { poll, listener } => (poll, listener),
            running @ State::Running(_) => {
                *state = running;
                return Err(Error::invalid("the network host is already running"));
            }
            State::Stopped => {
                return Err(Error::invalid(
                    "the network host was stopped; create a new one to start again",
                ))
            }
        };
        let io_err = |op, e| Error::io(op, self.local_addr.to_string(), e);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|e| io_err("register listener", e))?;
        let env = &self.env;
        let eid = self.config.eid;
        let managed = env.rep_get_config(ConfigFlag::GroupMembership);
        let mut set_addr = None;
        if managed {
            // The group's size comes from its log; the address other sites
            // dial comes from the membership: the one the application set,
            // or else the one this host listens on.
            if env.rep_local_addr().is_empty() {
                let addr = self.advertised_addr().to_string().into_bytes();
                env.rep_set_local_addr(&addr)?;
                set_addr = Some(addr);
            }
        } else if env.rep_get_nsites() == 0 {
            let peers = self.config.peers.len() + self.added_peers.lock().len();
            env.rep_set_nsites(peers as u32 + 1)?;
        }
        let sh = self.shared.clone();
        env.rep_set_transport(eid, move |m| sh.send(m))?;
        let (work_tx, work_rx) = crossbeam_channel::unbounded();
        let (elect_tx, elect_rx) = crossbeam_channel::unbounded();
        let sh = self.shared.clone();
        let tick = work_tx.clone();
        let loop_cmds = self.cmds.0.clone();
        env.set_event_notify(move |e| on_event(&sh, &tick, &loop_cmds, e));

        let cdata = Arc::new(self.advertised_addr().to_string().into_bytes());
        let ctl = NetControl {
            env: env.clone(),
            shared: self.shared.clone(),
            elector: elect_tx.clone(),
            loop_cmds: self.cmds.0.clone(),
            auto_elections: self.config.auto_elections,
            cdata: cdata.clone(),
        };
        let hello = Hello {
            eid,
            instance: backoff::seed(eid).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            addr: self.advertised_addr(),
            app_data: self.config.app_data.clone(),
        };
        let ev_loop = EventLoop::new(
            poll,
            listener,
            self.shared.clone(),
            self.cmds.1.clone(),
            work_tx.clone(),
            hello,
            &self.config,
        );
        let worker = Worker {
            ctl: ctl.clone(),
            hook: self.config.status_hook.clone(),
        };
        let elector = Elector {
            env: env.clone(),
            shared: self.shared.clone(),
            auto: self.config.auto_elections,
            initial_wait: self.config.initial_election_wait,
            backoff: backoff::Backoff::new(
                self.config.election_retry_min,
                self.config.election_retry_max,
                backoff::seed(eid).rotate_left(17),
            ),
            cdata: cdata.clone(),
        };
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(format!("dbrep-net-{name}-{eid}"))
                .spawn(f)
                .map_err(|e| Error::io("spawn thread", name.to_string(), e))
        };
        let mut running = Running {
            threads: Vec::new(),
            set_addr,
            work: work_tx,
            elector: elect_tx,
            ctl,
        };
        let spawned = (|| -> Result<()> {
            running
                .threads
                .push(spawn("loop", Box::new(move || ev_loop.run()))?);
            running
                .threads
                .push(spawn("worker", Box::new(move || worker.run(work_rx)))?);
            running
                .threads
                .push(spawn("elect", Box::new(move || elector.run(elect_rx)))?);
            env.rep_start(&cdata, self.config.start_as)?;
            // A restarted member knows its group from its log at once.
            if let Some(g) = env.rep_known_members() {
                if self.cmds.0.send(LoopCmd::Group(g)).is_ok() {
                    self.shared.wake();
                }
            }
            Ok(())
        })();
        if let Err(e) = spawned {
            self.shutdown(running);
            return Err(e);
        }
        let _ = running.work.send(Work::Tick);
        log::info!(
            "site {eid}: network host listening on {}, {} sites in the group",
            self.local_addr,
            env.rep_get_nsites()
        );
        *state = State::Running(running);
        Ok(())
    }

    /// Stops the host: closes every socket and joins every thread. The
    /// `Env` stays open; its sends fail from now on. Stopping a host that
    /// is not running does nothing. An election under way is not cut short
    /// (`rep_elect` cannot be interrupted): stop waits for it to end, at most
    /// the election timeout.
    pub fn stop(&self) -> Result<()> {
        let mut state = self.state.lock();
        if let State::Running(r) = std::mem::replace(&mut *state, State::Stopped) {
            self.shutdown(r);
            log::info!("site {}: network host stopped", self.config.eid);
        }
        Ok(())
    }

    fn shutdown(&self, r: Running) {
        self.shared.stopped.store(true, Ordering::Release);
        if let Err(e) = self.shared.waker.wake() {
            log::error!("waking the event loop to stop it: {e}");
        }
        let _ = r.work.send(Work::Stop);
        let _ = r.elector.send(ElectCmd::Stop);
        for t in r.threads {
            let _ = t.join();
        }
        // Break the `Env` → callback → host references, and make later sends fail.
        let _ = self
            .env
            .rep_set_transport(self.config.eid, |_| Err(SendError));
        self.env.set_event_notify(|_| {});
        self.shared.links.write().clear();
        if let Some(addr) = r.set_addr {
            if self.env.rep_local_addr() == addr {
                let _ = self.env.rep_set_local_addr(&[]);
            }
        }
    }

    /// Asks for an election now (whatever [`NetConfig::auto_elections`] says).
    pub fn elect(&self) -> Result<()> {
        match &*self.state.lock() {
            State::Running(r) => {
                r.ctl.elect();
                Ok(())
            }
            _ => Err(Error::invalid("the network host is not running")),
        }
    }

    /// The handle the reactions act through, while running.
    pub fn control(&self) -> Option<NetControl> {
        match &*self.state.lock() {
            State::Running(r) => Some(r.ctl.clone()),
            _ => None,
        }
    }

    /// What peer `eid` said about itself (advertised address, application
    /// data) in its latest handshake, and whether it is connected now;
    /// `None` if it never completed one with this host.
    pub fn peer_info(&self, eid: Eid) -> Option<PeerInfo> {
        self.shared.peer_info(eid)
    }

    /// [`Net::peer_info`] of every peer that ever completed a handshake, by eid.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.shared.peers()
    }

    /// Per-peer and site-wide counters.
    pub fn stats(&self) -> NetStats {
        self.shared.stats()
    }

    /// Test hook: while frozen, the event loop neither reads nor writes
    /// (connections stay open), as if the process had stopped.
    #[doc(hidden)]
    pub fn test_freeze(&self, frozen: bool) {
        self.shared.frozen.store(frozen, Ordering::Release);
        self.shared.wake_pending.store(false, Ordering::Release);
        self.shared.wake();
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The `Env`'s event handler: report, and let the worker recompute its deadline.
fn on_event(shared: &Shared, tick: &Sender<Work>, loop_cmds: &Sender<LoopCmd>, e: &Event) {
    let local = shared.local_eid;
    let ev = match e {
        Event::Master => {
            log::info!("site {local}: now master");
            NetEvent::RoleChanged(Role::Master)
        }
        Event::Client => {
            log::info!("site {local}: now client");
            NetEvent::RoleChanged(Role::Client)
        }
        Event::NewMaster(m) => {
            log::info!("site {local}: site {m} is master");
            NetEvent::NewMaster(*m)
        }
        Event::PermFailed(lsn) => NetEvent::PermFailed(*lsn),
        Event::JoinFailure => {
            log::warn!("site {local}: cannot join the master (JOIN_FAILURE)");
            NetEvent::JoinFailure
        }
        Event::GroupChanged(g) => {
            log::info!("site {local}: the group is {g}");
            if loop_cmds.send(LoopCmd::Group(g.clone())).is_ok() {
                shared.wake();
            }
            NetEvent::Other(e.clone())
        }
        Event::Elected => {
            shared.elected.store(true, Ordering::Release);
            NetEvent::Other(e.clone())
        }
        other => NetEvent::Other(other.clone()),
    };
    shared.emit(ev);
    let _ = tick.send(Work::Tick);
}

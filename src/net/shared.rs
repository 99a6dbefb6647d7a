//! State the host's threads and the `Env`'s send callback share: the
//! per-peer send queues, the counters, and the event channel.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;
use parking_lot::{Mutex, RwLock};

use crate::env::SendError;
use crate::lsn::Lsn;
use crate::net::frame::encode_msg;
use crate::rep::{Eid, OutMsg, Role, EID_BROADCAST};

/// What the host tells the application.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetEvent {
    /// This site's role changed.
    RoleChanged(Role),
    /// Another site is master now.
    NewMaster(Eid),
    /// A commit did not become permanent within the ack timeout.
    PermFailed(Lsn),
    /// This client cannot join its master without losing permanent data (or
    /// needs internal init with auto-init off): the application must act.
    JoinFailure,
    /// A connection to a peer completed its handshake.
    PeerConnected {
        /// The peer.
        eid: Eid,
        /// Its remote address.
        addr: SocketAddr,
        /// The address it accepts connections on, from its handshake.
        advertised: SocketAddr,
        /// Its [`NetConfig::app_data`](crate::net::NetConfig::app_data), from its handshake.
        app_data: Vec<u8>,
    },
    /// The connection to a peer closed.
    PeerDisconnected {
        /// The peer.
        eid: Eid,
        /// Why.
        reason: String,
    },
    /// A connection was refused before or during its handshake (garbage,
    /// another protocol version, an oversized frame, a handshake that never
    /// completed).
    ConnectionRejected {
        /// The remote address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// An election began.
    ElectionStarted {
        /// What led to it.
        reason: String,
    },
    /// This site won an election and is master.
    ElectionWon,
    /// An election ended with another site as master.
    ElectionLost {
        /// The winner, if known yet.
        master: Option<Eid>,
    },
    /// An election chose nobody (the host retries when elections are automatic).
    ElectionFailed {
        /// Why.
        reason: String,
    },
    /// The replication protocol asks for an election but automatic
    /// elections are off: call [`Net::elect`](crate::net::Net::elect).
    ElectionNeeded,
    /// Any other replication event.
    Other(crate::rep::Event),
}

/// What a peer said about itself in its latest handshake, as
/// [`Net::peer_info`](crate::net::Net::peer_info) reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer.
    pub eid: Eid,
    /// The address it accepts connections on.
    pub advertised: SocketAddr,
    /// Its [`NetConfig::app_data`](crate::net::NetConfig::app_data).
    pub app_data: Vec<u8>,
    /// Connected (handshake done) now; when not, the rest is what its last
    /// connection said.
    pub connected: bool,
}

/// Counters of one peer; they live across its connections.
#[derive(Debug, Default)]
pub(crate) struct PeerCounters {
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub frames_sent: AtomicU64,
    pub frames_received: AtomicU64,
    pub drops: AtomicU64,
    pub connects: AtomicU64,
}

/// One peer's counters and state, as [`Net::stats`](crate::net::Net::stats) reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// The peer.
    pub eid: Eid,
    /// Connected (handshake done) now.
    pub connected: bool,
    /// Bytes written to its socket.
    pub bytes_sent: u64,
    /// Bytes of frames received from it.
    pub bytes_received: u64,
    /// Frames written.
    pub frames_sent: u64,
    /// Frames received.
    pub frames_received: u64,
    /// Bytes queued for it and not yet written.
    pub queue_bytes: u64,
    /// Messages queued for it and not yet written.
    pub queue_frames: u64,
    /// Messages dropped because its queue was full.
    pub drops: u64,
    /// Connections after the first.
    pub reconnects: u64,
}

/// Site-wide counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Every peer this host has been connected to.
    pub peers: Vec<PeerStats>,
    /// Connections closed for a bad frame (garbage, checksum, version, size, protocol).
    pub bad_frames: u64,
    /// Connections closed because their handshake did not complete in time.
    pub handshake_timeouts: u64,
    /// Connections refused because the host already held its maximum.
    pub refused_connections: u64,
    /// Messages the `Env` asked to send to a peer that was not connected.
    pub unreachable: u64,
    /// Events dropped because the application did not collect them.
    pub events_dropped: u64,
    /// Messages `rep_process_message` rejected.
    pub messages_rejected: u64,
    /// Sockets open now (handshaking or connected), the listener aside.
    pub connections: u64,
    /// Bytes received and not yet processed.
    pub inbound_bytes: u64,
    /// Times the host stopped reading because the worker fell behind.
    pub read_pauses: u64,
}

/// The send queue of one connected peer.
pub(crate) struct Link {
    pub eid: Eid,
    pub queue: Mutex<VecDeque<Arc<Vec<u8>>>>,
    /// Bytes in `queue` plus bytes the event loop took and has not written yet.
    pub queued: AtomicUsize,
    pub frames: AtomicUsize,
    pub closed: AtomicBool,
    pub counters: Arc<PeerCounters>,
}

impl Link {
    pub fn new(eid: Eid, counters: Arc<PeerCounters>) -> Link {
        Link {
            eid,
            queue: Mutex::new(VecDeque::new()),
            queued: AtomicUsize::new(0),
            frames: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            counters,
        }
    }

    /// Queues a frame unless the queue is full; never blocks beyond the lock.
    fn enqueue(&self, frame: &Arc<Vec<u8>>, max: usize) -> bool {
        let mut q = self.queue.lock();
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        let queued = self.queued.load(Ordering::Acquire);
        if queued > 0 && queued + frame.len() > max {
            self.counters.drops.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.queued.fetch_add(frame.len(), Ordering::AcqRel);
        self.frames.fetch_add(1, Ordering::Relaxed);
        q.push_back(frame.clone());
        true
    }

    /// Called by the event loop for frames it has written (or discarded).
    pub fn written(&self, bytes: usize, frames: usize) {
        self.queued.fetch_sub(bytes, Ordering::AcqRel);
        self.frames.fetch_sub(frames, Ordering::Relaxed);
    }
}

#[derive(Default)]
pub(crate) struct SiteCounters {
    pub bad_frames: AtomicU64,
    pub handshake_timeouts: AtomicU64,
    pub refused_connections: AtomicU64,
    pub unreachable: AtomicU64,
    pub events_dropped: AtomicU64,
    pub messages_rejected: AtomicU64,
    pub connections: AtomicU64,
    pub read_pauses: AtomicU64,
}

pub(crate) struct Shared {
    pub local_eid: Eid,
    pub links: RwLock<HashMap<Eid, Arc<Link>>>,
    pub counters: Mutex<HashMap<Eid, Arc<PeerCounters>>>,
    /// Each peer's latest handshake: (advertised address, application data).
    pub peer_hellos: RwLock<HashMap<Eid, (SocketAddr, Vec<u8>)>>,
    pub site: SiteCounters,
    pub waker: mio::Waker,
    /// Set when the loop has been woken and has not yet looked at the queues.
    pub wake_pending: AtomicBool,
    pub stopped: AtomicBool,
    /// Test hook: the event loop neither reads nor writes while set.
    pub frozen: AtomicBool,
    pub max_queue: usize,
    /// Largest whole frame (header and body).
    pub max_frame: usize,
    /// Bytes handed to the worker and not yet processed.
    pub inbound: AtomicUsize,
    pub max_inbound: usize,
    pub reads_paused: AtomicBool,
    pub events: Sender<NetEvent>,
    /// Set by the event handler on `Event::Elected`, read by the election thread.
    pub elected: AtomicBool,
}

impl Shared {
    /// Wakes the event loop unless a wake-up is already pending (one
    /// syscall per burst of sends, not one per message).
    pub fn wake(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            if let Err(e) = self.waker.wake() {
                log::error!("waking the network event loop: {e}");
            }
        }
    }

    pub fn emit(&self, event: NetEvent) {
        if self.events.try_send(event).is_err() {
            self.site.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn counters_for(&self, eid: Eid) -> Arc<PeerCounters> {
        self.counters.lock().entry(eid).or_default().clone()
    }

    /// The `Env`'s send callback: queue the message for its peer(s).
    pub fn send(&self, m: &OutMsg) -> Result<(), SendError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(SendError);
        }
        let Some(frame) = encode_msg(&m.control, &m.rec) else {
            return Err(SendError);
        };
        if frame.len() > self.max_frame {
            log::warn!(
                "message of {} bytes exceeds the frame limit of {}; not sent",
                frame.len(),
                self.max_frame
            );
            return Err(SendError);
        }
        let frame = Arc::new(frame);
        let (mut queued, mut failed) = (false, false);
        {
            let links = self.links.read();
            if m.eid == EID_BROADCAST {
                for link in links.values() {
                    let ok = link.enqueue(&frame, self.max_queue);
                    queued |= ok;
                    failed |= !ok;
                }
            } else if let Some(link) = links.get(&m.eid) {
                let ok = link.enqueue(&frame, self.max_queue);
                queued |= ok;
                failed |= !ok;
            }
        }
        if queued {
            self.wake();
        } else if !failed {
            self.site.unreachable.fetch_add(1, Ordering::Relaxed);
        }
        if queued && !failed {
            Ok(())
        } else {
            Err(SendError)
        }
    }

    pub fn peer_info(&self, eid: Eid) -> Option<PeerInfo> {
        let (advertised, app_data) = self.peer_hellos.read().get(&eid)?.clone();
        Some(PeerInfo {
            eid,
            advertised,
            app_data,
            connected: self.links.read().contains_key(&eid),
        })
    }

    pub fn peers(&self) -> Vec<PeerInfo> {
        let mut eids: Vec<Eid> = self.peer_hellos.read().keys().copied().collect();
        eids.sort_unstable();
        eids.into_iter().filter_map(|e| self.peer_info(e)).collect()
    }

    pub fn stats(&self) -> NetStats {
        let links = self.links.read();
        let counters = self.counters.lock();
        let mut peers: Vec<PeerStats> = counters
            .iter()
            .map(|(&eid, c)| {
                let link = links.get(&eid);
                PeerStats {
                    eid,
                    connected: link.is_some(),
                    bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
                    bytes_received: c.bytes_received.load(Ordering::Relaxed),
                    frames_sent: c.frames_sent.load(Ordering::Relaxed),
                    frames_received: c.frames_received.load(Ordering::Relaxed),
                    queue_bytes: link.map_or(0, |l| l.queued.load(Ordering::Relaxed) as u64),
                    queue_frames: link.map_or(0, |l| l.frames.load(Ordering::Relaxed) as u64),
                    drops: c.drops.load(Ordering::Relaxed),
                    reconnects: c.connects.load(Ordering::Relaxed).saturating_sub(1),
                }
            })
            .collect();
        peers.sort_by_key(|p| p.eid);
        let s = &self.site;
        NetStats {
            peers,
            bad_frames: s.bad_frames.load(Ordering::Relaxed),
            handshake_timeouts: s.handshake_timeouts.load(Ordering::Relaxed),
            refused_connections: s.refused_connections.load(Ordering::Relaxed),
            unreachable: s.unreachable.load(Ordering::Relaxed),
            events_dropped: s.events_dropped.load(Ordering::Relaxed),
            messages_rejected: s.messages_rejected.load(Ordering::Relaxed),
            connections: s.connections.load(Ordering::Relaxed),
            inbound_bytes: self.inbound.load(Ordering::Relaxed) as u64,
            read_pauses: s.read_pauses.load(Ordering::Relaxed),
        }
    }
}

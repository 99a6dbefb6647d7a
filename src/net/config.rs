//! What a network host is told at start.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::net::control::NetControl;
use crate::rep::{Eid, StartAs, Status};

/// What the application's status hook decided.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Reaction {
    /// Run the host's default reaction as well.
    Default,
    /// The hook dealt with it; the host does nothing more.
    Handled,
}

/// Called on the worker thread with every status `rep_process_message` or
/// `rep_tick` returns, before the host's default reaction (the sender's eid,
/// or [`EID_INVALID`](crate::EID_INVALID) for a tick). Returning
/// [`Reaction::Handled`] replaces the default.
pub type StatusHook = Arc<dyn Fn(&NetControl, Eid, &Status) -> Reaction + Send + Sync>;

/// Settings of a network host. [`NetConfig::new`] gives the defaults.
#[derive(Clone)]
pub struct NetConfig {
    /// This site's environment id, the same for every peer (non-negative).
    pub eid: Eid,
    /// Where to listen; port 0 picks a free one ([`Net::local_addr`](crate::net::Net::local_addr) tells which).
    pub listen: SocketAddr,
    /// The address peers should connect back to; `None` = the bound address.
    pub advertise: Option<SocketAddr>,
    /// Addresses of the other sites to connect to.
    pub peers: Vec<SocketAddr>,
    /// The application's own bytes about this site, sent to every peer in
    /// the handshake next to the advertised address and opaque to the host:
    /// peers read them with [`Net::peer_info`](crate::net::Net::peer_info)
    /// and in [`NetEvent::PeerConnected`](crate::net::NetEvent::PeerConnected)
    /// (the networked node example puts its client address here, so a
    /// client can be redirected to the master's). At most
    /// [`MAX_APP_DATA`](crate::net::MAX_APP_DATA) bytes; more is refused by
    /// [`Net::new`](crate::net::Net::new). Empty by default.
    pub app_data: Vec<u8>,
    /// How the site starts: as a client (the default; elections pick a
    /// master) or as master.
    pub start_as: StartAs,
    /// Hold elections without being asked (the Replication Manager's
    /// behaviour). Off: the host only reports
    /// [`NetEvent::ElectionNeeded`](crate::net::NetEvent::ElectionNeeded) and
    /// the application calls [`Net::elect`](crate::net::Net::elect) or makes a
    /// site master itself.
    pub auto_elections: bool,
    /// At start, how long a client waits to hear of a master before it holds an election.
    pub initial_election_wait: Duration,
    /// First wait before retrying an election that chose nobody; doubles up
    /// to [`NetConfig::election_retry_max`], with jitter.
    pub election_retry_min: Duration,
    /// Longest wait between election attempts.
    pub election_retry_max: Duration,
    /// First wait before reconnecting to a peer; doubles up to
    /// [`NetConfig::connect_retry_max`], with jitter.
    pub connect_retry_min: Duration,
    /// Longest wait between connection attempts.
    pub connect_retry_max: Duration,
    /// A connection whose handshake has not completed in this time is closed.
    pub handshake_timeout: Duration,
    /// Largest frame body accepted from a peer (and sent to one).
    pub max_frame_bytes: usize,
    /// Most bytes queued for one peer and not yet written to its socket; a
    /// message that would pass it is dropped and its send reported failed.
    /// An empty queue always takes one message, so the bound is this or one
    /// frame, whichever is larger.
    pub max_queue_bytes: usize,
    /// Most bytes received and not yet processed; past it the host stops
    /// reading sockets until the worker has caught up by half (what was
    /// already read is still handed over: the bound is this plus one read
    /// of 64 KiB and one frame).
    pub max_inbound_bytes: usize,
    /// Most connections at once (a stranger opening sockets cannot make the host hold more).
    pub max_connections: usize,
    /// Capacity of the event channel; events the application does not
    /// collect past it are dropped and counted.
    pub event_capacity: usize,
    /// Replaces or extends the host's reactions to statuses.
    pub status_hook: Option<StatusHook>,
}

impl NetConfig {
    /// The defaults for site `eid` listening on `listen`.
    pub fn new(eid: Eid, listen: SocketAddr) -> NetConfig {
        NetConfig {
            eid,
            listen,
            advertise: None,
            peers: Vec::new(),
            app_data: Vec::new(),
            start_as: StartAs::Client,
            auto_elections: true,
            initial_election_wait: Duration::from_secs(3),
            election_retry_min: Duration::from_millis(500),
            election_retry_max: Duration::from_secs(20),
            connect_retry_min: Duration::from_millis(50),
            connect_retry_max: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            max_frame_bytes: (64 << 20) + (1 << 16),
            max_queue_bytes: 16 << 20,
            max_inbound_bytes: 128 << 20,
            max_connections: 256,
            event_capacity: 1024,
            status_hook: None,
        }
    }
}

impl fmt::Debug for NetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetConfig")
            .field("eid", &self.eid)
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("peers", &self.peers)
            .field("app_data", &self.app_data.len())
            .field("start_as", &self.start_as)
            .field("auto_elections", &self.auto_elections)
            .field("max_queue_bytes", &self.max_queue_bytes)
            .field("status_hook", &self.status_hook.is_some())
            .finish_non_exhaustive()
    }
}

//! [`NetControl`]: what the host's reactions act through, handed to the
//! application's status hook so it can do what the defaults would.

use std::net::SocketAddr;
use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::env::Env;
use crate::net::elector::ElectCmd;
use crate::net::event_loop::LoopCmd;
use crate::net::shared::{NetEvent, Shared};
use crate::rep::Eid;

/// A handle on a running host's actions. Cheap to clone.
#[derive(Clone)]
pub struct NetControl {
    pub(crate) env: Env,
    pub(crate) shared: Arc<Shared>,
    pub(crate) elector: Sender<ElectCmd>,
    pub(crate) loop_cmds: Sender<LoopCmd>,
    pub(crate) auto_elections: bool,
    pub(crate) cdata: Arc<Vec<u8>>,
}

impl NetControl {
    /// The environment the host serves.
    pub fn env(&self) -> &Env {
        &self.env
    }

    /// This site's id.
    pub fn local_eid(&self) -> Eid {
        self.shared.local_eid
    }

    /// What this site passes to `rep_start` as `cdata`: its advertised address.
    pub fn cdata(&self) -> &[u8] {
        &self.cdata
    }

    /// Asks for an election now, whatever the automatic-election setting.
    /// It runs on the host's election thread; the outcome arrives as a
    /// [`NetEvent`].
    pub fn elect(&self) {
        let _ = self.elector.send(ElectCmd::Explicit);
    }

    /// Connects to a site at `addr` (if not connected to it already) and
    /// keeps reconnecting to it.
    pub fn connect(&self, addr: SocketAddr) {
        if self.loop_cmds.send(LoopCmd::AddPeer(addr)).is_ok() {
            self.shared.wake();
        }
    }

    /// The protocol asked for an election: hold one if elections are
    /// automatic, else tell the application.
    pub(crate) fn election_needed(&self, reason: &'static str) {
        if self.auto_elections {
            let _ = self.elector.send(ElectCmd::Auto(reason));
        } else {
            self.shared.emit(NetEvent::ElectionNeeded);
        }
    }
}

//! The worker thread: hands every received message to
//! `rep_process_message` in arrival order, calls `rep_tick` when the
//! deadline it returned comes, and reacts to statuses.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::net::config::{Reaction, StatusHook};
use crate::net::control::NetControl;
use crate::net::elector::ElectCmd;
use crate::net::frame::Frame;
use crate::rep::{Eid, Role, StartAs, Status, EID_INVALID};

/// Work for the worker thread.
pub(crate) enum Work {
    /// A message from `eid`: `body` as the frame carried it.
    Msg {
        eid: Eid,
        body: Vec<u8>,
        control_len: usize,
    },
    /// A peer's connection completed its handshake.
    PeerUp(Eid),
    /// A peer's connection closed (not by a group change or a shutdown).
    /// It comes after the messages read from that connection, so they are
    /// processed before the elector acts on the loss: the last record a
    /// master sent before closing (the one removing this site, say) is not
    /// overtaken by an election that would make this site drop it.
    PeerDown(Eid),
    /// Something may have moved the next deadline: tick now.
    Tick,
    Stop,
}

/// Most messages processed between two ticks.
const BATCH: usize = 256;

pub(crate) struct Worker {
    pub ctl: NetControl,
    pub hook: Option<StatusHook>,
}

impl Worker {
    pub fn run(self, rx: Receiver<Work>) {
        let mut next: Option<Instant> = Some(Instant::now());
        loop {
            let first = match next {
                Some(t) => rx.recv_deadline(t),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            let mut item = Some(first);
            let mut handled = 0;
            while let Some(w) = item.take() {
                match w {
                    Ok(Work::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                    Ok(Work::Msg {
                        eid,
                        body,
                        control_len,
                    }) => self.message(eid, &body, control_len),
                    Ok(Work::PeerUp(eid)) => self.peer_up(eid),
                    Ok(Work::PeerDown(eid)) => {
                        let _ = self.ctl.elector.send(ElectCmd::LostPeer(eid));
                    }
                    Ok(Work::Tick) | Err(RecvTimeoutError::Timeout) => {}
                }
                handled += 1;
                if handled < BATCH {
                    item = rx.try_recv().ok().map(Ok);
                }
            }
            next = self.tick();
        }
    }

    fn message(&self, eid: Eid, body: &[u8], control_len: usize) {
        let shared = &self.ctl.shared;
        // SeqCst with the loop's pause: either it sees the bytes gone or we see its flag.
        let before = shared.inbound.fetch_sub(body.len(), Ordering::SeqCst);
        let after = before - body.len();
        if after <= shared.max_inbound / 2 && shared.reads_paused.load(Ordering::SeqCst) {
            shared.wake();
        }
        let (control, rec) = Frame::parts(body, control_len);
        match self.ctl.env.rep_process_message(control, rec, eid) {
            Ok(status) => self.react(eid, status),
            Err(e) => {
                shared
                    .site
                    .messages_rejected
                    .fetch_add(1, Ordering::Relaxed);
                log::debug!(
                    "site {}: message from {eid} rejected: {e}",
                    shared.local_eid
                );
            }
        }
    }

    /// A new connection: a master announces itself, a client without a
    /// master asks again, so the new peer need not wait for a re-request.
    fn peer_up(&self, eid: Eid) {
        let env = &self.ctl.env;
        let s = env.rep_stat(false);
        let r = match s.role {
            Some(Role::Master) => env.rep_start(&self.ctl.cdata, StartAs::Master),
            Some(Role::Client) if s.master.is_none() => {
                env.rep_start(&self.ctl.cdata, StartAs::Client)
            }
            _ => Ok(()),
        };
        if let Err(e) = r {
            log::debug!(
                "site {}: after peer {eid} connected: {e}",
                self.ctl.shared.local_eid
            );
        }
    }

    fn tick(&self) -> Option<Instant> {
        match self.ctl.env.rep_tick() {
            Ok(t) => {
                self.react(EID_INVALID, t.status);
                t.next.map(|d| Instant::now() + d)
            }
            Err(e) => {
                log::error!("site {}: rep_tick: {e}", self.ctl.shared.local_eid);
                None
            }
        }
    }

    fn react(&self, eid: Eid, status: Status) {
        if let Some(hook) = &self.hook {
            if hook(&self.ctl, eid, &status) == Reaction::Handled {
                return;
            }
        }
        default_reaction(&self.ctl, status);
    }
}

/// The reactions the Berkeley DB documentation prescribes to a host.
pub(crate) fn default_reaction(ctl: &NetControl, status: Status) {
    let local = ctl.shared.local_eid;
    match status {
        Status::HoldElection => ctl.election_needed("the replication protocol asked"),
        Status::NewSite { eid, cdata } => {
            match std::str::from_utf8(&cdata)
                .ok()
                .and_then(|s| s.parse::<SocketAddr>().ok())
            {
                Some(addr) => {
                    log::debug!("site {local}: new site {eid} at {addr}");
                    ctl.connect(addr);
                }
                None => log::debug!("site {local}: new site {eid} gave no address"),
            }
        }
        Status::DupMaster => {
            log::warn!("site {local}: another master of our generation; restarting as client");
            if let Err(e) = ctl.env.rep_start(&ctl.cdata, StartAs::Client) {
                log::error!("site {local}: rep_start(CLIENT) after DUPMASTER: {e}");
            }
            ctl.election_needed("two masters of one generation");
        }
        // The events carry these to the application; an elected site is
        // made master by the election thread that won.
        Status::NewMaster(_)
        | Status::JoinFailure
        | Status::Processed
        | Status::IsPerm(_)
        | Status::NotPerm(_)
        | Status::Ignore
        | Status::NotStarted => {}
    }
}

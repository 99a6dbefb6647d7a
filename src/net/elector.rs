//! The election thread: `rep_elect` blocks until the election ends, so it
//! runs here while the worker keeps feeding messages in.
//!
//! It elects at start when no master is heard within the initial wait, when
//! the protocol asks (`HoldElection`: a silent master, a master search that
//! found nobody, a peer's campaign), when the connection to the master
//! closes, and when the application asks; after an election that leaves no
//! master it retries with back-off.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::env::Env;
use crate::error::Error;
use crate::net::backoff::Backoff;
use crate::net::shared::{NetEvent, Shared};
use crate::rep::{Eid, ElectionOutcome, Role, StartAs};

/// Requests to the election thread.
#[derive(Debug)]
pub(crate) enum ElectCmd {
    /// The protocol asked for an election.
    Auto(&'static str),
    /// The application asked for one.
    Explicit,
    /// The connection to this peer closed (an election if it was the master).
    LostPeer(Eid),
    Stop,
}

/// How one election ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Won,
    OtherWon(Option<Eid>),
    AlreadyMaster,
    Failed(String),
}

/// The one place that calls `rep_elect` and reads its result.
fn hold_election(env: &Env) -> Outcome {
    if env.role() == Role::Master {
        return Outcome::AlreadyMaster;
    }
    // `rep_elect` says how the election ended; a win's `Event::Elected`
    // has been delivered, on this thread, before it returns.
    match env.rep_elect(0, 0, 0) {
        Ok(ElectionOutcome::Won) => Outcome::Won,
        Ok(ElectionOutcome::OtherWon { master }) => Outcome::OtherWon(Some(master)),
        Err(Error::Unavail(why)) => Outcome::Failed(why),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

pub(crate) struct Elector {
    pub env: Env,
    pub shared: Arc<Shared>,
    pub auto: bool,
    pub initial_wait: Duration,
    pub backoff: Backoff,
    pub cdata: Arc<Vec<u8>>,
}

impl Elector {
    fn master_known(&self) -> bool {
        let s = self.env.rep_stat(false);
        s.role == Some(Role::Master) || s.master.is_some()
    }

    pub fn run(mut self, rx: Receiver<ElectCmd>) {
        let mut retry_at = self.auto.then(|| Instant::now() + self.initial_wait);
        loop {
            let first = match retry_at {
                Some(t) => rx.recv_deadline(t),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            let mut reason: Option<String> = None;
            // Forced: the protocol or the application asked, so a master we
            // still think we have does not stop it.
            let mut forced = false;
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                match cmd {
                    Ok(ElectCmd::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                    Ok(ElectCmd::Explicit) => {
                        forced = true;
                        reason = Some("the application asked".into());
                    }
                    Ok(ElectCmd::Auto(why)) => {
                        forced = true;
                        reason.get_or_insert_with(|| why.into());
                    }
                    Ok(ElectCmd::LostPeer(eid)) => {
                        let s = self.env.rep_stat(false);
                        if self.auto && s.role != Some(Role::Master) && s.master == Some(eid) {
                            forced = true;
                            reason = Some(format!("lost the connection to master {eid}"));
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        retry_at = None;
                        if !self.master_known() {
                            reason.get_or_insert_with(|| "no master heard".into());
                        }
                    }
                }
                // Requests that piled up during the last election are one request.
                next = rx.try_recv().ok().map(Ok);
            }
            let Some(reason) = reason else { continue };
            if !forced && self.master_known() {
                continue;
            }
            retry_at = self.elect(&reason);
        }
    }

    /// Holds one election; returns when to try again, if ever.
    fn elect(&mut self, reason: &str) -> Option<Instant> {
        log::info!(
            "site {}: holding an election ({reason})",
            self.shared.local_eid
        );
        self.shared.emit(NetEvent::ElectionStarted {
            reason: reason.to_string(),
        });
        match hold_election(&self.env) {
            Outcome::Won => match self.env.rep_start(&self.cdata, StartAs::Master) {
                Ok(()) => {
                    log::info!("site {}: won the election", self.shared.local_eid);
                    self.shared.emit(NetEvent::ElectionWon);
                    self.backoff.reset();
                }
                Err(e) => {
                    log::warn!(
                        "site {}: won, but cannot start as master: {e}",
                        self.shared.local_eid
                    );
                    self.shared.emit(NetEvent::ElectionFailed {
                        reason: format!("won, but rep_start(MASTER) failed: {e}"),
                    });
                }
            },
            Outcome::OtherWon(master) => {
                log::info!(
                    "site {}: election over, master {master:?}",
                    self.shared.local_eid
                );
                self.shared.emit(NetEvent::ElectionLost { master });
                self.backoff.reset();
            }
            Outcome::AlreadyMaster => self.backoff.reset(),
            Outcome::Failed(why) => {
                log::info!("site {}: election failed: {why}", self.shared.local_eid);
                self.shared.emit(NetEvent::ElectionFailed { reason: why });
            }
        }
        if self.auto && !self.master_known() && !self.shared.stopped.load(Ordering::Acquire) {
            Some(Instant::now() + self.backoff.next_wait())
        } else {
            None
        }
    }
}

//! An in-process host for examples and tests: every site is an [`Env`] in
//! this process, and each gets a thread that feeds it the messages other
//! sites send, through channels. Sites can be cut off and reconnected.
//!
//! It reacts to return codes as the Berkeley DB documentation tells a host
//! to: HOLDELECTION starts an election on another thread; an ELECTED event
//! makes the site master (from inside the event callback, which dbrep allows
//! because callbacks run with no lock held).

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use dbrep::{Eid, Env, Event, OutMsg, SendError, StartAs, Status, EID_BROADCAST};

type Packet = (Eid, Vec<u8>, Vec<u8>);

#[derive(Default)]
struct Shared {
    inboxes: Mutex<HashMap<Eid, Sender<Packet>>>,
    cut: Mutex<HashSet<Eid>>,
    events: Mutex<Vec<(Eid, Event)>>,
}

/// The hub. Dropping it (or calling `shutdown`) stops the delivery threads.
#[derive(Default)]
pub struct Hub {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Hub {
    pub fn new() -> Hub {
        Hub::default()
    }

    /// Connects `env` as site `eid`: sets its transport and event handler and
    /// starts its delivery thread.
    pub fn join(&self, eid: Eid, env: &Env) {
        let shared = self.shared.clone();
        env.rep_set_transport(eid, move |m: &OutMsg| send(&shared, eid, m))
            .expect("valid eid");
        let shared = self.shared.clone();
        let weak_env = env.clone();
        env.set_event_notify(move |e: &Event| {
            shared.events.lock().unwrap().push((eid, e.clone()));
            if *e == Event::Elected {
                // Re-entering the handle from its own callback is allowed.
                if let Err(err) = weak_env.rep_start(&[], StartAs::Master) {
                    eprintln!("site {eid}: rep_start(MASTER) after winning: {err}");
                }
            }
        });
        let (tx, rx) = channel::<Packet>();
        self.shared.inboxes.lock().unwrap().insert(eid, tx);
        let env = env.clone();
        let shared = self.shared.clone();
        let handle = std::thread::spawn(move || loop {
            let (from, control, rec) = match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(p) => p,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if !shared.inboxes.lock().unwrap().contains_key(&eid) {
                        return;
                    }
                    match env.rep_tick() {
                        Ok(t) if t.status == Status::HoldElection => elect_in_background(&env),
                        _ => {}
                    }
                    continue;
                }
                Err(_) => return,
            };
            if shared.cut.lock().unwrap().contains(&eid) {
                continue;
            }
            match env.rep_process_message(&control, &rec, from) {
                Ok(Status::HoldElection) => elect_in_background(&env),
                Ok(Status::DupMaster) => {
                    let _ = env.rep_start(&[], StartAs::Client);
                    elect_in_background(&env);
                }
                Ok(_) => {}
                Err(e) => log::debug!("site {eid}: message from {from} rejected: {e}"),
            }
        });
        self.threads.lock().unwrap().push(handle);
    }

    /// Cuts site `eid` off: nothing it sends arrives, nothing reaches it.
    pub fn cut(&self, eid: Eid) {
        self.shared.cut.lock().unwrap().insert(eid);
    }

    /// Reconnects site `eid`.
    pub fn reconnect(&self, eid: Eid) {
        self.shared.cut.lock().unwrap().remove(&eid);
    }

    /// Removes a site for good (its thread ends).
    pub fn leave(&self, eid: Eid) {
        self.shared.inboxes.lock().unwrap().remove(&eid);
    }

    /// Every event seen so far, with the site that reported it.
    pub fn events(&self) -> Vec<(Eid, Event)> {
        self.shared.events.lock().unwrap().clone()
    }

    /// Stops every delivery thread and waits for them.
    pub fn shutdown(&self) {
        self.shared.inboxes.lock().unwrap().clear();
        for h in self.threads.lock().unwrap().drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn send(shared: &Shared, from: Eid, m: &OutMsg) -> Result<(), SendError> {
    if shared.cut.lock().unwrap().contains(&from) {
        return Err(SendError);
    }
    let inboxes = shared.inboxes.lock().unwrap();
    let targets: Vec<Eid> = if m.eid == EID_BROADCAST {
        inboxes.keys().copied().filter(|&e| e != from).collect()
    } else {
        vec![m.eid]
    };
    for to in targets {
        if let Some(tx) = inboxes.get(&to) {
            let _ = tx.send((from, m.control.to_vec(), m.rec.clone()));
        }
    }
    Ok(())
}

/// `rep_elect` blocks until the election ends, so it runs on its own thread
/// while the delivery threads keep feeding messages.
fn elect_in_background(env: &Env) {
    let env = env.clone();
    std::thread::spawn(move || {
        if let Err(e) = env.rep_elect(0, 0, 0) {
            eprintln!("election: {e}");
        }
    });
}

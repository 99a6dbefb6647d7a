//! Sites in one process for the data tests: `Env`s whose messages go to a
//! shared mailbox that the test delivers, on its own thread, when it chooses.

#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use dbrep::log::LogConfig;
use dbrep::wire::CONTROL_LEN;
use dbrep::{AckPolicy, Eid, Env, EnvConfig, StartAs, EID_BROADCAST};

type Mail = Arc<Mutex<Vec<(Eid, Eid, [u8; CONTROL_LEN], Vec<u8>)>>>;

/// A group of in-memory sites; site `i` (from 1) is `sites[i - 1]`.
pub struct Group {
    pub sites: Vec<Env>,
    mail: Mail,
    /// Sites whose messages, in and out, are dropped.
    pub cut: Arc<Mutex<HashSet<Eid>>>,
}

pub fn config(nsites: u32) -> EnvConfig {
    let mut config = EnvConfig {
        log: LogConfig {
            in_memory: true,
            ..LogConfig::default()
        },
        ..EnvConfig::default()
    };
    config.rep.nsites = nsites;
    config.rep.ack_policy = AckPolicy::None;
    config
}

impl Group {
    /// `n` sites from `config`, site 1 started as master, the rest as clients.
    pub fn new(n: u32, config: EnvConfig) -> Group {
        let mail: Mail = Arc::default();
        let cut: Arc<Mutex<HashSet<Eid>>> = Arc::default();
        let mut sites = Vec::new();
        for eid in 1..=n as Eid {
            let env = Env::open_in_memory(config.clone()).unwrap();
            let mail = mail.clone();
            let cut = cut.clone();
            env.rep_set_transport(eid, move |m| {
                if cut.lock().unwrap().contains(&eid) {
                    return Ok(());
                }
                let targets: Vec<Eid> = if m.eid == EID_BROADCAST {
                    (1..=n as Eid).filter(|&t| t != eid).collect()
                } else {
                    vec![m.eid]
                };
                for to in targets {
                    mail.lock()
                        .unwrap()
                        .push((eid, to, m.control, m.rec.clone()));
                }
                Ok(())
            })
            .unwrap();
            sites.push(env);
        }
        let g = Group { sites, mail, cut };
        g.sites[0].rep_start(b"1", StartAs::Master).unwrap();
        for s in &g.sites[1..] {
            s.rep_start(b"", StartAs::Client).unwrap();
        }
        g.deliver();
        g
    }

    pub fn site(&self, eid: Eid) -> &Env {
        &self.sites[eid as usize - 1]
    }

    /// Delivers the oldest message waiting; false when there is none.
    pub fn deliver_one(&self) -> bool {
        let next = {
            let mut mail = self.mail.lock().unwrap();
            if mail.is_empty() {
                return false;
            }
            mail.remove(0)
        };
        let (from, to, control, rec) = next;
        if !self.cut.lock().unwrap().contains(&to) {
            let _ = self.site(to).rep_process_message(&control, &rec, from);
        }
        true
    }

    /// Drops every message waiting.
    pub fn drop_mail(&self) {
        self.mail.lock().unwrap().clear();
    }

    /// Delivers messages until none are left.
    pub fn deliver(&self) {
        for _ in 0..100_000 {
            let batch: Vec<_> = self.mail.lock().unwrap().drain(..).collect();
            if batch.is_empty() {
                return;
            }
            for (from, to, control, rec) in batch {
                if self.cut.lock().unwrap().contains(&to) {
                    continue;
                }
                // A refused message is the protocol's business; the tests
                // look at the outcome.
                let _ = self.site(to).rep_process_message(&control, &rec, from);
            }
        }
        panic!("messages kept flowing");
    }
}

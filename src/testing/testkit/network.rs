//! The simulated network: messages in flight, faults, cut links.

use super::Cluster;
use crate::rep::{Eid, OutMsg, EID_BROADCAST};

/// A message in flight.
#[derive(Clone, Debug)]
pub struct Packet {
    /// Sender.
    pub from: Eid,
    /// Receiver.
    pub to: Eid,
    /// Control bytes.
    pub control: Vec<u8>,
    /// Rec bytes.
    pub rec: Vec<u8>,
}

/// Network fault rates.
#[derive(Clone, Debug, Default)]
pub struct NetFaults {
    /// Chance (per mille) a message is lost.
    pub drop_per_mille: u32,
    /// Chance (per mille) a message is delivered twice.
    pub dup_per_mille: u32,
    /// Extra random delay, up to this, per message (reorders messages).
    pub max_jitter_us: u64,
}

impl Cluster {
    pub(super) fn send(&mut self, from: Eid, m: OutMsg) {
        let targets: Vec<Eid> = if m.eid == EID_BROADCAST {
            self.sites.keys().copied().filter(|&e| e != from).collect()
        } else {
            vec![m.eid]
        };
        for to in targets {
            if let Some(trace) = &mut self.trace {
                trace.push(Packet {
                    from,
                    to,
                    control: m.control.to_vec(),
                    rec: m.rec.clone(),
                });
            }
            if self.faults.drop_per_mille > 0 && self.rng.chance(self.faults.drop_per_mille) {
                self.lost += 1;
                continue;
            }
            let copies =
                if self.faults.dup_per_mille > 0 && self.rng.chance(self.faults.dup_per_mille) {
                    2
                } else {
                    1
                };
            for _ in 0..copies {
                let jitter = self.rng.below(self.faults.max_jitter_us + 1);
                let slow = self.sites.get(&to).map_or(0, |s| s.slow_us);
                let at = self.now + self.latency_us + jitter + slow;
                self.seq += 1;
                self.queue.insert(
                    (at, self.seq),
                    Packet {
                        from,
                        to,
                        control: m.control.to_vec(),
                        rec: m.rec.clone(),
                    },
                );
            }
        }
    }

    /// Delivers the earliest message due by `now`; false if none is.
    pub fn deliver_one(&mut self) -> bool {
        let Some((&(at, seq), _)) = self.queue.iter().next() else {
            return false;
        };
        if at > self.now {
            return false;
        }
        let p = self.queue.remove(&(at, seq)).expect("present");
        let up = self.sites.get(&p.to).is_some_and(|s| s.is_up());
        if !up || self.blocked.contains(&(p.from, p.to)) {
            self.lost += 1;
            return true;
        }
        self.delivered += 1;
        let now = self.now;
        let site = self.site_mut(p.to);
        let local = site.local(now);
        let r = site.core_mut().process(local, &p.control, &p.rec, p.from);
        site.next_tick = now;
        match r {
            Ok(st) => self.on_status(p.to, st),
            Err(e) => log::debug!("site {} rejected a message from {}: {e}", p.to, p.from),
        }
        self.collect(p.to);
        true
    }

    /// Cuts every link between sites in different groups.
    pub fn partition(&mut self, groups: &[&[Eid]]) {
        self.blocked.clear();
        for (i, a) in groups.iter().enumerate() {
            for (j, b) in groups.iter().enumerate() {
                if i != j {
                    for &x in a.iter() {
                        for &y in b.iter() {
                            self.blocked.insert((x, y));
                        }
                    }
                }
            }
        }
    }

    /// Cuts a site off from every other.
    pub fn isolate(&mut self, eid: Eid) {
        for other in self.ids() {
            if other != eid {
                self.blocked.insert((eid, other));
                self.blocked.insert((other, eid));
            }
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.blocked.clear();
    }
}

//! Where the event loop dials: configured and added peers, sites learned
//! from a hello, and the members of the replicated group, with back-off;
//! a site that leaves the group is no longer dialled and its connections
//! close.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;
use mio::Token;

use super::{Close, Dial, EventLoop};
use crate::membership::Membership;
use crate::net::backoff::Backoff;
use crate::rep::Eid;

impl EventLoop {
    /// Adds a place to dial. `revive`: a dial dropped when its site left
    /// the group is dialled again (the site is a member again); a hello
    /// from a departed site does not revive it, nor does a request to
    /// connect to it (the `NEWSITE` it sends when a member that has not yet
    /// applied its removal reconnects to it) while it is not a member.
    pub(super) fn add_dial(&mut self, addr: SocketAddr, eid: Option<Eid>, revive: bool) {
        if addr == self.hello.addr {
            return;
        }
        if let Some(d) = self.dials.iter_mut().find(|d| d.addr == addr) {
            let departed = d.eid.is_some_and(|e| self.departed.contains(&e));
            if revive && d.dropped && !departed {
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
    pub(super) fn group_changed(&mut self, g: Membership) {
        let local = self.shared.local_eid;
        let now: BTreeSet<Eid> = g.members().iter().map(|m| m.eid).collect();
        let before = self.group.replace(now.clone()).unwrap_or_default();
        self.departed.retain(|e| !now.contains(e));
        self.departed
            .extend(before.difference(&now).filter(|&&e| e != local));
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
            // Its connections, and the ones we are dialling to it (no hello
            // yet), which would otherwise complete and stay.
            let dials = &self.dials;
            let tokens: Vec<Token> = self
                .conns
                .iter()
                .filter(|(_, c)| {
                    c.hello.as_ref().is_some_and(|h| h.eid == gone)
                        || c.dial.is_some_and(|i| dials[i].eid == Some(gone))
                })
                .map(|(t, _)| *t)
                .collect();
            for t in tokens {
                self.close(t, Close::Left(format!("site {gone} left the group")));
            }
        }
    }

    pub(super) fn wants_dial(&self, d: &Dial) -> bool {
        d.conn.is_none() && !d.dropped && !d.eid.is_some_and(|e| self.by_eid.contains_key(&e))
    }

    pub(super) fn dial(&mut self, i: usize) {
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

    pub(super) fn retry_later(&mut self, i: usize) {
        let d = &mut self.dials[i];
        d.conn = None;
        d.next_attempt = Instant::now() + d.backoff.next_wait();
    }
}

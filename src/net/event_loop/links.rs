//! A peer's link: the handshake, which of two connections to the same
//! peer both ends keep (the other parked or closed), moving what was queued
//! to a replacement, and closing a connection (a parked one takes over, or
//! the peer is reported gone).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::Token;

use super::{Close, EventLoop};
use crate::net::frame::Hello;
use crate::net::shared::{Link, NetEvent};
use crate::net::worker::Work;
use crate::rep::Eid;

impl EventLoop {
    pub(super) fn hello_received(&mut self, t: Token, h: Hello) -> bool {
        let local = self.shared.local_eid;
        if h.eid == local {
            self.shared.site.bad_frames.fetch_add(1, Ordering::Relaxed);
            let dial = self.conns.get(&t).and_then(|c| c.dial);
            self.close(
                t,
                Close::Rejected(format!("the peer claims our own eid {local}")),
            );
            if let Some(i) = dial {
                // Probably our own address: stop dialling it.
                self.dials[i].next_attempt = Instant::now() + Duration::from_secs(3600);
            }
            return false;
        }
        let dial = self.conns.get(&t).and_then(|c| c.dial);
        if dial.is_some_and(|i| self.dials[i].dropped) {
            // Dialled before its site left the group; the group changed
            // while the handshake was under way.
            self.close(t, Close::Left(format!("site {} left the group", h.eid)));
            return false;
        }
        let c = self.conns.get_mut(&t).expect("caller checked");
        c.deadline = None;
        c.hello = Some(h.clone());
        let outgoing = c.dial.is_some();
        if let Some(i) = c.dial {
            self.dials[i].eid = Some(h.eid);
        } else {
            self.add_dial(h.addr, Some(h.eid), false);
        }
        if let Some(&old) = self.by_eid.get(&h.eid) {
            let old_conn = &self.conns[&old];
            let restarted = old_conn.hello.as_ref().map(|o| o.instance) != Some(h.instance);
            // Both ends keep the connection the smaller eid dialled, so two
            // sites dialling each other settle on the same one.
            let new_dialler = if outgoing { local } else { h.eid };
            let old_dialler = if old_conn.dial.is_some() {
                local
            } else {
                h.eid
            };
            let keeper = local.min(h.eid);
            let replace = restarted || (new_dialler == keeper && old_dialler != keeper);
            if !replace {
                log::debug!(
                    "site {local}: duplicate connection to {}; keeping the first",
                    h.eid
                );
                // The loser is closed by the site that dialled it; the other
                // parks it, as that site may still be sending on it.
                if outgoing {
                    self.close(t, Close::Duplicate);
                    return false;
                }
                return true;
            }
            log::debug!(
                "site {local}: connection to {} replaces an older one",
                h.eid
            );
            let carried = self.take_unstarted(old);
            // Establish first, so closing the old one finds its successor in place.
            self.establish(t, &h, carried);
            let old_outgoing = self.conns.get(&old).is_some_and(|c| c.dial.is_some());
            if restarted || old_outgoing {
                self.close(old, Close::Duplicate);
            } else {
                self.park(old);
            }
            return self.conns.contains_key(&t);
        }
        self.establish(t, &h, Vec::new());
        true
    }

    /// Stops using a connection for sending without closing it.
    fn park(&mut self, t: Token) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        if let Some(link) = c.link.take() {
            // What is left (a frame begun) no longer counts in any queue.
            let (mut bytes, mut frames) = (0, 0);
            for (f, counted) in c.out.iter_mut() {
                if *counted {
                    bytes += f.len();
                    frames += 1;
                    *counted = false;
                }
            }
            link.written(bytes, frames);
            if self.by_eid.get(&link.eid) == Some(&t) {
                self.by_eid.remove(&link.eid);
                self.shared.links.write().remove(&link.eid);
            }
            link.closed.store(true, Ordering::Release);
        }
    }

    /// A parked connection to `eid`, to take over when its link closes.
    fn parked(&self, eid: Eid) -> Option<Token> {
        self.conns
            .iter()
            .find(|(_, c)| c.link.is_none() && c.hello.as_ref().is_some_and(|h| h.eid == eid))
            .map(|(t, _)| *t)
    }

    /// Whole frames an old connection never began to write, to move to its replacement.
    fn take_unstarted(&mut self, t: Token) -> Vec<Arc<Vec<u8>>> {
        let Some(c) = self.conns.get_mut(&t) else {
            return Vec::new();
        };
        let Some(link) = c.link.clone() else {
            return Vec::new();
        };
        let skip = usize::from(c.out_off > 0);
        let mut frames: Vec<Arc<Vec<u8>>> = Vec::new();
        let mut kept = VecDeque::new();
        for (i, (f, counted)) in c.out.drain(..).enumerate() {
            if i < skip || !counted {
                kept.push_back((f, counted));
            } else {
                frames.push(f);
            }
        }
        c.out = kept;
        frames.extend(link.queue.lock().drain(..));
        let bytes: usize = frames.iter().map(|f| f.len()).sum();
        link.written(bytes, frames.len());
        frames
    }

    fn establish(&mut self, t: Token, h: &Hello, carried: Vec<Arc<Vec<u8>>>) {
        let eid = h.eid;
        self.shared
            .peer_hellos
            .write()
            .insert(eid, (h.addr, h.app_data.clone()));
        let counters = self.shared.counters_for(eid);
        counters.connects.fetch_add(1, Ordering::Relaxed);
        let link = Arc::new(Link::new(eid, counters));
        {
            let mut q = link.queue.lock();
            let bytes: usize = carried.iter().map(|f| f.len()).sum();
            link.queued.fetch_add(bytes, Ordering::AcqRel);
            link.frames.fetch_add(carried.len(), Ordering::Relaxed);
            q.extend(carried);
        }
        self.shared.links.write().insert(eid, link.clone());
        self.by_eid.insert(eid, t);
        let c = self.conns.get_mut(&t).expect("caller checked");
        c.link = Some(link);
        let remote = c.remote;
        if let Some(i) = c.dial {
            self.dials[i].backoff.reset();
        }
        log::info!(
            "site {}: connected to site {eid} at {remote}",
            self.shared.local_eid
        );
        self.shared.emit(NetEvent::PeerConnected {
            eid,
            addr: remote,
            advertised: h.addr,
            app_data: h.app_data.clone(),
        });
        let _ = self.work.send(Work::PeerUp(eid));
        self.flush(t);
    }

    pub(super) fn close(&mut self, t: Token, why: Close) {
        let Some(mut c) = self.conns.remove(&t) else {
            return;
        };
        self.shared
            .site
            .connections
            .store(self.conns.len() as u64, Ordering::Relaxed);
        let _ = self.poll.registry().deregister(&mut c.stream);
        let local = self.shared.local_eid;
        if let Some(link) = &c.link {
            if self.by_eid.get(&link.eid) == Some(&t) {
                self.by_eid.remove(&link.eid);
                self.shared.links.write().remove(&link.eid);
            }
            link.closed.store(true, Ordering::Release);
            let _guard = link.queue.lock();
            link.queued.store(0, Ordering::Release);
            link.frames.store(0, Ordering::Relaxed);
            let successor = if self.by_eid.contains_key(&link.eid)
                || matches!(why, Close::Shutdown | Close::Left(_))
            {
                None
            } else {
                self.parked(link.eid)
            };
            if let Some(next) = successor {
                log::debug!(
                    "site {local}: the connection to {} closed; a parked one takes over",
                    link.eid
                );
                let hello = self.conns[&next]
                    .hello
                    .clone()
                    .expect("parked after its hello");
                self.establish(next, &hello, Vec::new());
            } else if let Close::Failed(reason) | Close::Rejected(reason) | Close::Left(reason) =
                &why
            {
                let reason = reason.clone();
                log::info!(
                    "site {local}: disconnected from site {}: {reason}",
                    link.eid
                );
                self.shared.emit(NetEvent::PeerDisconnected {
                    eid: link.eid,
                    reason,
                });
                if !matches!(why, Close::Left(_)) {
                    // Through the worker: behind the messages already read
                    // from this connection (see `Work::PeerDown`).
                    let _ = self.work.send(Work::PeerDown(link.eid));
                }
            }
        } else if let Close::Rejected(reason) = &why {
            log::warn!(
                "site {local}: connection from {} rejected: {reason}",
                c.remote
            );
            self.shared.emit(NetEvent::ConnectionRejected {
                addr: c.remote,
                reason: reason.clone(),
            });
        } else if let Close::Failed(reason) = &why {
            log::debug!(
                "site {local}: connection with {} closed: {reason}",
                c.remote
            );
        }
        if let Some(i) = c.dial {
            if why != Close::Shutdown {
                self.retry_later(i);
            }
        }
    }
}

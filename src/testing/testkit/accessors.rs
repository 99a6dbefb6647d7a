//! Read and set the cluster's state through methods, so tests do not
//! depend on how the test kit stores it (the public fields stay for the
//! tests that still use them).

use super::{Cluster, NetFaults, Packet};
use crate::rep::{Eid, Event, Status};

impl Cluster {
    /// Simulated global time in microseconds.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Moves simulated time forward by `us` with nothing delivered (every
    /// process stalls; due timers and messages fire at the next run).
    pub fn stall(&mut self, us: u64) {
        self.now = self.now.saturating_add(us);
    }

    /// Sets the network's fault rates.
    pub fn set_faults(&mut self, faults: NetFaults) {
        self.faults = faults;
    }

    /// Sets the base one-way latency of every message.
    pub fn set_latency_us(&mut self, us: u64) {
        self.latency_us = us;
    }

    /// Sets the host's timer resolution (see [`Cluster::min_tick_us`]).
    pub fn set_min_tick_us(&mut self, us: u64) {
        self.min_tick_us = us;
    }

    /// Turns the documented host's reactions to events and statuses on or off.
    pub fn set_auto_host(&mut self, on: bool) {
        self.auto_host = on;
    }

    /// Cuts the directed link `from` → `to`.
    pub fn block(&mut self, from: Eid, to: Eid) {
        self.blocked.insert((from, to));
    }

    /// Restores the directed link `from` → `to`.
    pub fn unblock(&mut self, from: Eid, to: Eid) {
        self.blocked.remove(&(from, to));
    }

    /// True when the directed link `from` → `to` is cut.
    pub fn is_blocked(&self, from: Eid, to: Eid) -> bool {
        self.blocked.contains(&(from, to))
    }

    /// True when some link is cut.
    pub fn any_blocked(&self) -> bool {
        !self.blocked.is_empty()
    }

    /// Messages in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Drops every message in flight; returns how many were dropped.
    pub fn drop_in_flight(&mut self) -> usize {
        let n = self.queue.len();
        self.lost += n as u64;
        self.queue.clear();
        n
    }

    /// Starts recording every message sent (see [`Cluster::take_trace`]).
    pub fn record_trace(&mut self) {
        self.trace = Some(Vec::new());
    }

    /// The messages recorded since [`Cluster::record_trace`] or the last take.
    pub fn take_trace(&mut self) -> Vec<Packet> {
        self.trace.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Messages delivered so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Messages lost to faults or cut links so far.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Every event site `eid` reported, in order.
    pub fn events(&self, eid: Eid) -> &[Event] {
        &self.site(eid).events
    }

    /// Every non-trivial status site `eid` returned, in order.
    pub fn statuses(&self, eid: Eid) -> &[Status] {
        &self.site(eid).statuses
    }

    /// True unless site `eid` is crashed.
    pub fn is_up(&self, eid: Eid) -> bool {
        self.site(eid).is_up()
    }

    /// The messages in flight, in delivery order.
    pub fn packets_in_flight(&self) -> impl Iterator<Item = &Packet> {
        self.queue.values()
    }

    /// The next message to be delivered, if any.
    pub fn next_in_flight(&self) -> Option<&Packet> {
        self.queue.values().next()
    }

    /// Delivers the next message in flight, moving time forward to its
    /// delivery time if that is later; returns it (it may still be lost to a
    /// cut link or a crashed receiver: see [`Cluster::lost`]).
    pub fn deliver_next(&mut self) -> Option<Packet> {
        let (&(at, _), p) = self.queue.iter().next()?;
        let p = p.clone();
        self.now = self.now.max(at);
        self.deliver_one();
        Some(p)
    }

    /// Drops the next message in flight and returns it.
    pub fn drop_next(&mut self) -> Option<Packet> {
        let key = *self.queue.keys().next()?;
        self.lost += 1;
        self.queue.remove(&key)
    }

    /// Site `eid` calls an election now (`rep_elect` with the defaults);
    /// returns the core's answer.
    pub fn elect(&mut self, eid: Eid) -> crate::error::Result<()> {
        let local = self.local_now(eid);
        let r = self.core(eid).elect(local, 0, 0, 0);
        self.site_mut(eid).next_tick = self.now;
        self.collect(eid);
        r.map(|_| ())
    }
}

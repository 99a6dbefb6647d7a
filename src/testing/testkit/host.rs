//! The host model: what a documented host does with events and statuses,
//! its timers, and the event loop that runs the cluster.

use super::Cluster;
use crate::rep::{CommitPoll, Eid, Event, Role, StartAs, Status};

impl Cluster {
    /// Polls the site's commits in flight ([`Core::commit_poll`](crate::rep::Core::commit_poll)),
    /// then moves its output into the network and handles its events.
    pub fn collect(&mut self, eid: Eid) {
        let mut msgs = Vec::new();
        let mut events = Vec::new();
        {
            let now = self.now;
            let site = self.site_mut(eid);
            let local = site.local(now);
            let Some(core) = site.core.as_mut() else {
                return;
            };
            // The host's commits in flight: any call may have settled one.
            site.commits
                .retain_mut(|t| matches!(core.commit_poll(local, t), CommitPoll::Waiting { .. }));
            core.take_output(&mut msgs, &mut events);
        }
        for m in msgs {
            self.send(eid, m);
        }
        for e in events {
            self.on_event(eid, e);
        }
    }

    pub(super) fn on_event(&mut self, eid: Eid, e: Event) {
        let auto = self.auto_host;
        self.site_mut(eid).events.push(e.clone());
        if !auto {
            return;
        }
        if e == Event::Elected {
            // The documented response: become master now.
            let now = self.now;
            let site = self.site_mut(eid);
            site.started_as = Some(StartAs::Master);
            let local = site.local(now);
            if let Err(err) = site.core_mut().start(local, StartAs::Master, &[]) {
                log::warn!("site {eid}: rep_start(MASTER) after winning: {err}");
            }
            self.collect(eid);
        }
    }

    pub(super) fn on_status(&mut self, eid: Eid, st: Status) {
        if !matches!(st, Status::Processed | Status::IsPerm(_)) {
            self.site_mut(eid).statuses.push(st.clone());
        }
        if !self.auto_host {
            return;
        }
        match st {
            Status::HoldElection => self.site_mut(eid).want_election = true,
            Status::DupMaster => {
                let now = self.now;
                let site = self.site_mut(eid);
                site.started_as = Some(StartAs::Client);
                let local = site.local(now);
                let _ = site.core_mut().start(local, StartAs::Client, &[]);
                site.want_election = true;
                self.collect(eid);
            }
            _ => {}
        }
    }

    /// Runs timers due by `now` and owed elections.
    pub fn tick_due(&mut self) {
        let min_tick = self.min_tick_us.max(1);
        for eid in self.ids() {
            let now = self.now;
            let site = self.site_mut(eid);
            if !site.is_up() || site.started_as.is_none() {
                continue;
            }
            let local = site.local(now);
            if site.next_tick <= now {
                let r = site.core_mut().tick(local);
                match r {
                    Ok((st, next)) => {
                        // The core's deadline is by the site's clock.
                        let next = next.map_or(u64::MAX, |l| site.clock.global(l));
                        site.next_tick = next.max(now + min_tick);
                        self.on_status(eid, st);
                    }
                    Err(e) => {
                        // A failed site (RunRecovery) answers every tick so:
                        // nothing more to run until it is restarted.
                        log::warn!("site {eid} tick: {e}");
                        site.next_tick = u64::MAX;
                    }
                }
                self.collect(eid);
            }
            let auto = self.auto_host;
            let site = self.site_mut(eid);
            if auto && site.want_election {
                site.want_election = false;
                let core = site.core_mut();
                if core.role() == Role::Client && !core.in_election() {
                    if let Err(e) = core.elect(local, 0, 0, 0) {
                        log::debug!("site {eid}: rep_elect: {e}");
                    }
                    site.next_tick = now;
                    self.collect(eid);
                }
            }
        }
    }

    /// The time of the next due message or timer (`u64::MAX` if none): lets
    /// a driver (the simulator) run its own event loop with checks between events.
    pub fn next_event_time(&self) -> u64 {
        let q = self.queue.keys().next().map_or(u64::MAX, |k| k.0);
        let t = self
            .sites
            .values()
            .filter(|s| s.is_up() && s.started_as.is_some())
            .map(|s| s.next_tick)
            .min()
            .unwrap_or(u64::MAX);
        q.min(t)
    }

    /// Runs the cluster for `us` of simulated time: delivers messages and
    /// fires timers in time order.
    pub fn run_for(&mut self, us: u64) {
        let end = self.now.saturating_add(us);
        loop {
            while self.deliver_one() {}
            self.tick_due();
            if self.queue.keys().next().is_some_and(|k| k.0 <= self.now) {
                continue;
            }
            let next = self.next_event_time();
            if next > end {
                break;
            }
            self.now = self.now.max(next);
        }
        self.now = end;
    }

    /// Runs until `pred` holds or `max_us` passes; returns whether it held.
    pub fn run_until(
        &mut self,
        max_us: u64,
        step_us: u64,
        mut pred: impl FnMut(&mut Cluster) -> bool,
    ) -> bool {
        let end = self.now.saturating_add(max_us);
        while self.now < end {
            if pred(self) {
                return true;
            }
            self.run_for(step_us.min(end - self.now));
        }
        pred(self)
    }
}

//! Application-driven elections (`rep_elect`).
//!
//! Two phases, as in Berkeley DB. In phase 1 every participant broadcasts a
//! `Vote1` with its last log record's generation and LSN, its priority and a
//! random tie-breaker, all tagged with the election generation (egen). Once a
//! site has phase-1 information from `nsites` sites (or from at least
//! `nvotes` when the phase-1 wait runs out) it picks the best electable
//! candidate — most recent log, then highest priority, then tie-breaker — and
//! sends it a `Vote2`. A candidate holding `nvotes` votes wins and gets
//! `Event::Elected`; it becomes master when the host calls
//! `rep_start(MASTER)`, taking the egen as its generation. A site in an
//! election that hears a `Vote1` from a site not yet in its tally answers it
//! with its own `Vote1` directly, so a phase-1 message that was lost, or
//! ignored by a site that was not yet electing, does not leave the two
//! unaware of each other.
//!
//! `rep_elect` on a client always runs an election: the host calls it
//! because it judged the master dead, so the client stops following its
//! master first. If that master is alive, its next message makes the
//! client its follower again.
//!
//! Safety rests on these rules:
//! - A site makes its egen and its vote durable before the vote leaves it,
//!   so it never votes twice in one egen, even across a crash.
//! - A vote raises the voter's generation to the election's, as a Raft vote
//!   raises the term. A master older than that election then gets nothing
//!   from the voter (an acknowledgement from a voter could complete the old
//!   master's quorum for a record the winner lacks), and the voter's replies
//!   make such a master step down. The simulator found the lost commit this
//!   prevents.
//! - A voter judges candidates against its log as it is when it votes, and
//!   votes for the best electable log it has heard of.
//! - Voting and winning need a majority of `nsites` — of the larger of the
//!   size the election began with and the size configured now, since a group
//!   that grew mid-election would otherwise let two sides each win — unless
//!   the host explicitly allows sub-majorities.
//! - A site that hears from a live master ignores other sites' elections
//!   (the effect of Raft's pre-vote). A partitioned site that keeps calling
//!   `rep_elect` never gathers enough sites to vote, so it never raises its
//!   generation and cannot depose a healthy master when it returns.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};
use crate::rep::core::membership::AHEAD_MAX;
use crate::rep::core::Core;
use crate::rep::outbox::Outgoing;
use crate::rep::types::{Eid, Event, Role, SendFlags, Status, EID_BROADCAST};
use crate::rep::vote::{best_candidate, Candidate};
use crate::wire::{Envelope, Message};

/// One election generation as this site sees it.
#[derive(Clone, Debug)]
pub(crate) struct Election {
    pub egen: u32,
    /// The host called `rep_elect`; otherwise the site only listens.
    pub active: bool,
    pub nsites: u32,
    pub nvotes: u32,
    pub phase1_deadline: u64,
    pub deadline: u64,
    pub tally: BTreeMap<Eid, Candidate>,
    pub voted_for: Option<Eid>,
    pub votes: BTreeSet<Eid>,
}
/// How an election this site took part in ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElectionProgress {
    /// Still running.
    InProgress,
    /// This site won: it should now call `rep_start(MASTER)`.
    Won,
    /// Another site is master.
    OtherWon {
        /// The master's id.
        master: Eid,
    },
    /// No winner within the election timeout.
    Failed(String),
}

impl Core {
    /// Starts (or joins) an election (`rep_elect`). It ends through
    /// [`Core::process`] and [`Core::tick`]; [`Core::election_progress`] tells how.
    ///
    /// `nsites` 0 means the configured `nsites`; `nvotes` 0 means a simple
    /// majority of `nsites`. A sub-majority `nvotes` is refused unless
    /// [`ConfigFlag::AllowSubMajority`](crate::rep::ConfigFlag::AllowSubMajority) is set.
    pub fn elect(
        &mut self,
        now: u64,
        nsites: u32,
        nvotes: u32,
        flags: u32,
    ) -> Result<ElectionProgress> {
        self.advance(now);
        self.check_alive()?;
        let local = self
            .eid
            .ok_or_else(|| Error::invalid("rep_elect before rep_set_transport"))?;
        if self.role == Role::Unset {
            return Err(Error::invalid("rep_elect must be called after rep_start"));
        }
        if flags != 0 {
            return Err(Error::invalid(format!(
                "rep_elect flags must be 0, got {flags:#x}"
            )));
        }
        if self.managed_group() {
            if self.group_state.group.is_none() || self.group_state.refused.is_some() {
                return Err(Error::invalid(format!(
                    "rep_elect: site {local} holds no replicated group (yet): it takes part \
                     in elections once it has caught up with one"
                )));
            }
            if nsites != 0 && nsites != self.cfg.nsites {
                return Err(Error::invalid(format!(
                    "rep_elect: the group's size comes from its replicated membership ({} \
                     sites); pass 0",
                    self.cfg.nsites
                )));
            }
        }
        if self.cfg.lease && nsites != 0 && !self.managed_group() {
            return Err(Error::invalid("with leases, rep_elect's nsites must be 0"));
        }
        let nsites = if nsites == 0 { self.cfg.nsites } else { nsites };
        if nsites == 0 {
            return Err(Error::invalid(
                "rep_elect needs nsites (argument or rep_set_nsites)",
            ));
        }
        let majority = nsites / 2 + 1;
        let nvotes = if nvotes == 0 { majority } else { nvotes };
        if nvotes > nsites {
            return Err(Error::invalid(format!(
                "nvotes {nvotes} exceeds nsites {nsites}"
            )));
        }
        if nvotes < majority {
            if !self.cfg.allow_sub_majority {
                return Err(Error::invalid(format!(
                    "nvotes {nvotes} is below a majority ({majority}) of {nsites} sites; \
                     set ConfigFlag::AllowSubMajority to accept the risk of two masters"
                )));
            }
            log::warn!(
                "election with {nvotes} of {nsites} votes: a partition may elect two masters"
            );
        }
        if self.role == Role::Master {
            self.election_result = Some(ElectionProgress::OtherWon { master: local });
            return Ok(ElectionProgress::OtherWon { master: local });
        }
        if self.master.is_some() {
            // The host judged our master dead (it may know better than our
            // timers: a closed connection). Answering "there is a master"
            // instead would leave a group whose master crashed a moment ago
            // with nobody ever electing. Stop following it; if it is in fact
            // alive, its next message makes us its client again, and peers
            // that still hear it ignore our campaign.
            self.start_search();
        }
        self.stats.elections += 1;
        // Join an election others started, unless we already voted in it.
        let egen = match &self.election {
            Some(e) if e.egen > self.meta.gen && self.meta.vote_egen != e.egen => e.egen,
            _ => self.meta.egen.max(self.meta.gen) + 1,
        };
        self.begin_election(egen, nsites, nvotes)?;
        self.maybe_vote()?;
        Ok(self.election_progress())
    }

    /// How the latest election ended, or `InProgress`.
    pub fn election_progress(&self) -> ElectionProgress {
        match (&self.election, &self.election_result) {
            (Some(e), _) if e.active => ElectionProgress::InProgress,
            (_, Some(r)) => r.clone(),
            _ => ElectionProgress::Failed("no election was held".into()),
        }
    }

    /// True while this site runs an election the host asked for.
    pub fn in_election(&self) -> bool {
        self.election.as_ref().is_some_and(|e| e.active)
    }

    pub(super) fn begin_election(&mut self, egen: u32, nsites: u32, nvotes: u32) -> Result<()> {
        let local = self.eid.expect("checked by callers");
        if egen > self.meta.egen {
            let mut meta = self.meta;
            meta.egen = egen;
            self.set_meta(meta)?;
        }
        // Voting waits for our lease promise to lapse, so the election may too.
        let now = if self.grant_outstanding() {
            self.lease.grant_expiry_us
        } else {
            self.now
        };
        let full = self.cfg.full_election_timeout_us > 0 && !self.ever_had_master;
        let phase1 = if full {
            self.cfg.full_election_timeout_us
        } else {
            self.cfg.election_timeout_us / 2
        };
        let mut tally = match self.election.take() {
            Some(e) if e.egen == egen => e.tally,
            _ => BTreeMap::new(),
        };
        let me = self.local_candidate();
        tally.insert(local, me);
        self.election = Some(Election {
            egen,
            active: true,
            nsites,
            nvotes,
            phase1_deadline: now + phase1,
            deadline: now + phase1 + self.cfg.election_timeout_us.max(1),
            tally,
            voted_for: None,
            votes: BTreeSet::new(),
        });
        self.election_result = None;
        self.broadcast_vote1(&me, nsites, nvotes);
        Ok(())
    }

    pub(super) fn local_candidate(&mut self) -> Candidate {
        let log = self.storage.log();
        let (last_gen, last_lsn) = (log.last_gen(), log.last_lsn());
        Candidate {
            priority: self.election_priority(),
            last_gen,
            last_lsn,
            tiebreaker: self.next_random(),
        }
    }

    pub(super) fn broadcast_vote1(&mut self, me: &Candidate, nsites: u32, nvotes: u32) {
        self.send_vote1(EID_BROADCAST, me, nsites, nvotes);
    }

    pub(super) fn send_vote1(&mut self, to: Eid, me: &Candidate, nsites: u32, nvotes: u32) {
        let msg = Message::Vote1 {
            nsites,
            nvotes,
            priority: me.priority,
            last_gen: me.last_gen,
            last_lsn: me.last_lsn,
            tiebreaker: me.tiebreaker,
            full: false,
        };
        self.send(Outgoing::to(to, msg).lsn(me.last_lsn));
    }

    /// A master counts as live if we heard from it recently enough: within the
    /// heartbeat-monitor timeout, or the election timeout when heartbeats are off.
    pub(crate) fn master_is_live(&self) -> bool {
        if self.role == Role::Master {
            return true;
        }
        if self.master.is_none() {
            return false;
        }
        let window = if self.cfg.heartbeat_monitor_us > 0 {
            self.cfg.heartbeat_monitor_us
        } else {
            self.cfg.election_timeout_us
        };
        self.now < self.client_state.master_heard_us + window
    }

    /// With replicated membership, true while a master of a generation
    /// older than ours spoke to us within the election timeout. Such a
    /// site hears no candidacy and casts no vote, not even for itself (as
    /// a Raft server ignores vote requests while it hears from a leader):
    /// its generation came from a vote in
    /// an election nobody won, and voting again would raise it past the
    /// master's once more. A site outside the master's group can be kept
    /// that way by a removed site standing in every election, deposing
    /// each master the group elects (seeds 108833, 206398); answering the
    /// master instead makes it step down once and be elected above us.
    /// Not voting is always safe; it delays an election by at most one
    /// timeout once the stale master falls silent.
    pub(crate) fn stale_master_is_live(&self) -> bool {
        self.managed_group()
            && self.role != Role::Master
            && self
                .client_state
                .stale_master_heard_us
                .is_some_and(|t| self.now < t + self.cfg.election_timeout_us)
    }

    pub(crate) fn election_message(&mut self, env: Envelope<&[u8]>, from: Eid) -> Result<Status> {
        match env.msg {
            Message::Vote1 {
                nsites,
                nvotes,
                priority,
                last_gen,
                last_lsn,
                tiebreaker,
                ..
            } => {
                if self.role == Role::Master {
                    // Tell the candidate there is a master; it will follow us.
                    self.announce(from);
                    return Ok(Status::Processed);
                }
                // Only members' candidacies count here, and those of a
                // site whose log is ahead of ours: it may hold a change
                // that added it which our log has not reached yet, and
                // without our vote the group that change made might have
                // no majority able to elect anyone. A removed site cannot
                // disrupt this way: unless it holds the record removing it
                // (and so stops standing), its log is behind the group's.
                // This site votes whatever its own log says of its
                // membership (as a Raft server answers vote requests): the
                // candidate counts votes against its own group, and a site
                // whose log lags behind the change that added it must still
                // be able to elect the master that holds that change. It
                // stands with priority 0 while not a member.
                // Such a site must stand (a priority above 0): one that
                // does not cannot win.
                let ahead_of_us = priority > 0
                    && (last_gen, last_lsn)
                        > (self.storage.log().last_gen(), self.storage.log().last_lsn());
                if !(self.is_voter(from) || ahead_of_us)
                    || self.group_state.refused.is_some()
                    || (self.managed_group() && self.group_state.group.is_none())
                {
                    return Ok(Status::Ignore);
                }
                log::debug!(
                    "site {:?} hears the candidacy of site {from} in egen {} ({last_gen}, {last_lsn}, priority {priority})",
                    self.eid,
                    env.egen
                );
                let priority = match self.group_state.group.as_ref().and_then(|g| g.get(from)) {
                    Some(m) if !m.electable => 0,
                    _ => priority,
                };
                if self.master_is_live() && !self.in_election() {
                    return Ok(Status::Ignore);
                }
                if self.stale_master_is_live() {
                    return Ok(Status::Ignore);
                }
                // Older elections are over; so is any at or below our
                // generation, except the one we voted in (a late voter still
                // needs our phase-1 information).
                if env.egen < self.meta.egen
                    || (env.egen <= self.meta.gen && env.egen != self.meta.vote_egen)
                {
                    return Ok(Status::Ignore);
                }
                if ahead_of_us && !self.is_voter(from) && self.group_state.ahead.len() < AHEAD_MAX {
                    self.group_state.ahead.insert(from);
                }
                let cand = Candidate {
                    priority,
                    last_gen,
                    last_lsn,
                    tiebreaker,
                };
                let was_active = self.in_election();
                let current = self.election.as_ref().map(|e| e.egen);
                if current != Some(env.egen) {
                    if was_active {
                        // A later election overtakes ours: join it with the same parameters.
                        let (ns, nv) = self
                            .election
                            .as_ref()
                            .map(|e| (e.nsites, e.nvotes))
                            .expect("active");
                        self.begin_election(env.egen, ns, nv)?;
                    } else {
                        self.meta.egen = self.meta.egen.max(env.egen);
                        self.election = Some(Election {
                            egen: env.egen,
                            active: false,
                            nsites,
                            nvotes,
                            phase1_deadline: 0,
                            deadline: self.now + self.cfg.election_timeout_us,
                            tally: BTreeMap::new(),
                            voted_for: None,
                            votes: BTreeSet::new(),
                        });
                    }
                }
                let mut newly_heard = false;
                if let Some(e) = &mut self.election {
                    newly_heard = e.tally.insert(from, cand).is_none();
                }
                if newly_heard && self.in_election() {
                    // The sender may have missed our phase-1 message (lost,
                    // or it was not yet electing and ignored it): tell it
                    // directly, once per site per election.
                    let local = self.eid.expect("election implies an id");
                    let me = self
                        .election
                        .as_ref()
                        .and_then(|e| e.tally.get(&local).copied());
                    if let (Some(me), Some(e)) = (me, self.election.as_ref()) {
                        let (ns, nv) = (e.nsites, e.nvotes);
                        self.send_vote1(from, &me, ns, nv);
                    }
                }
                if self.in_election() {
                    self.maybe_vote()?;
                    Ok(Status::Processed)
                } else {
                    Ok(Status::HoldElection)
                }
            }
            Message::Vote2 => {
                let Some(e) = &self.election else {
                    return Ok(Status::Ignore);
                };
                if !self.is_voter(from) {
                    return Ok(Status::Ignore);
                }
                if env.egen != e.egen {
                    return Ok(Status::Ignore);
                }
                // Filter, then count: more distinct voters than the group
                // has sites are senders the group does not hold.
                let (nsites, _) = self.election_size(e);
                if !e.votes.contains(&from) && e.votes.len() as u32 >= nsites {
                    log::warn!("vote from site {from} beyond the {nsites} sites of the group");
                    return Ok(Status::Ignore);
                }
                let Some(e) = &mut self.election else {
                    return Ok(Status::Ignore);
                };
                e.votes.insert(from);
                assert!(
                    e.votes.len() as u32 <= nsites,
                    "{} votes in a group of {nsites} sites",
                    e.votes.len()
                );
                self.check_won()?;
                Ok(Status::Processed)
            }
            _ => Ok(Status::Ignore),
        }
    }

    /// Casts this site's vote once it has heard enough.
    pub(super) fn maybe_vote(&mut self) -> Result<()> {
        let local = self.eid.expect("election implies an id");
        let now = self.now;
        let Some(e) = &self.election else {
            return Ok(());
        };
        if !e.active || e.voted_for.is_some() || self.meta.vote_egen == e.egen {
            return Ok(());
        }
        if self.stale_master_is_live() {
            // Not even for ourselves: see `stale_master_is_live`.
            return Ok(());
        }
        if self.grant_outstanding() {
            // A lease we granted may still let the old master serve reads.
            return Ok(());
        }
        // Phase 1 ends early once every member of the group has spoken
        // (and every site ahead heard in an earlier election): a candidacy
        // heard from a site outside the group must not make us vote before
        // the members have. At its deadline it ends with enough sites heard,
        // counting this site even when it is not a member (a site outside
        // its group by its own log must still be able to vote for the one
        // candidate that needs it, when members are dead).
        let members_heard = e.tally.keys().filter(|&&eid| self.is_voter(eid)).count() as u32;
        let heard =
            members_heard + u32::from(!self.is_voter(local) && e.tally.contains_key(&local));
        let (nsites, nvotes) = self.election_size(e);
        let ahead_unheard = self
            .group_state
            .ahead
            .iter()
            .any(|eid| !e.tally.contains_key(eid));
        let all_heard = members_heard >= nsites && !ahead_unheard;
        let deadline_passed = heard >= nvotes && now >= e.phase1_deadline;
        if !(all_heard || deadline_passed) {
            return Ok(());
        }
        // Judge candidates against our log as it is now, not as it was when
        // the election began: a vote must never go to a log older than ours.
        let (last_gen, last_lsn) = (self.storage.log().last_gen(), self.storage.log().last_lsn());
        if let Some(me) = self.election.as_mut().and_then(|e| e.tally.get_mut(&local)) {
            me.last_gen = last_gen;
            me.last_lsn = last_lsn;
        }
        let Some(e) = &self.election else {
            return Ok(());
        };
        let best = best_candidate(&e.tally);
        let Some(best) = best else {
            return self.fail_election("no electable site took part (every priority is 0)".into());
        };
        if self.managed_group() && best != local {
            // With replicated membership a site that may not stand (a
            // non-member by its own log, or a view site) never votes for a
            // log behind its own, as a Raft voter: a change or commit its
            // copy helped settle must survive the election it decides.
            let me = e.tally.get(&local).map(|c| (c.last_gen, c.last_lsn));
            let them = e.tally.get(&best).map(|c| (c.last_gen, c.last_lsn));
            if me > them {
                return Ok(());
            }
            // Nor does a site outside its own group vote for a log no
            // further than its own: that candidate's group is ours, the
            // vote cannot count, and casting it would still raise our
            // generation past a master's and depose it (seed 111075: a
            // removed site voting for another removed site, forever).
            if me == them && !self.is_member() {
                return Ok(());
            }
        }
        let egen = e.egen;
        log::debug!(
            "site {local} votes for site {best} in egen {egen}, having heard {:?}",
            e.tally.keys().collect::<Vec<_>>()
        );
        // Durable before the vote leaves: never two votes in one egen.
        // Voting also raises our generation to the election's, as a Raft
        // vote raises the term: from now on a master older than this
        // election gets nothing from us (an acknowledgement from a voter
        // could complete the old master's quorum for a record the winner
        // lacks), and our replies make such a master step down.
        let mut meta = self.meta;
        meta.egen = meta.egen.max(egen);
        meta.gen = meta.gen.max(egen);
        meta.vote_egen = egen;
        meta.vote_for = best;
        self.set_meta(meta)?;
        if let Some(e) = &mut self.election {
            e.voted_for = Some(best);
            if best == local {
                e.votes.insert(local);
            }
        }
        if best != local {
            self.send(Outgoing::to(best, Message::Vote2).hints(SendFlags::NOBUFFER));
        }
        self.check_won()
    }

    /// The sites and votes an election needs now. The group may have grown
    /// since the election began (`rep_set_nsites`): a majority of the old
    /// size is then no majority, and two sides could each elect a master of
    /// the same generation. So the current `nsites` always counts too.
    pub(super) fn election_size(&self, e: &Election) -> (u32, u32) {
        let nsites = e.nsites.max(self.cfg.nsites);
        let nvotes = if self.cfg.allow_sub_majority {
            e.nvotes
        } else {
            e.nvotes.max(nsites / 2 + 1)
        };
        (nsites, nvotes)
    }

    pub(super) fn check_won(&mut self) -> Result<()> {
        let local = self.eid.expect("election implies an id");
        let Some(e) = &self.election else {
            return Ok(());
        };
        let (_, nvotes) = self.election_size(e);
        if !e.active || e.voted_for != Some(local) || (e.votes.len() as u32) < nvotes {
            return Ok(());
        }
        let egen = e.egen;
        log::info!(
            "site {local} won the election of egen {egen} with {} votes",
            e.votes.len()
        );
        self.election = None;
        self.elected_egen = Some(egen);
        self.election_result = Some(ElectionProgress::Won);
        self.stats.elections_won += 1;
        self.event(Event::Elected);
        Ok(())
    }

    pub(super) fn fail_election(&mut self, why: String) -> Result<()> {
        log::warn!("election failed: {why}");
        self.election = None;
        self.election_result = Some(ElectionProgress::Failed(why));
        self.event(Event::ElectionFailed);
        // Ask the host to try again after the retry interval if still masterless.
        self.client_state.search_since = self.now + self.cfg.election_retry_us;
        self.client_state.search_since = self
            .client_state
            .search_since
            .saturating_sub(self.cfg.master_search_us);
        self.client_state.search_held = false;
        Ok(())
    }

    /// Ends an election because a master turned up.
    pub(crate) fn election_found_master(&mut self, master: Eid) {
        if let Some(e) = &self.election {
            if e.active {
                self.election_result = Some(ElectionProgress::OtherWon { master });
            }
        }
        self.election = None;
        self.ever_had_master = true;
        self.group_state.ahead.clear();
    }

    pub(crate) fn election_tick(&mut self) -> Result<Option<Status>> {
        let now = self.now;
        let Some(e) = &self.election else {
            return Ok(None);
        };
        if now >= e.deadline {
            if e.active {
                let why = format!(
                    "no winner within the election timeout (heard from {} of {} sites, {} votes of {} needed)",
                    e.tally.len(),
                    e.nsites,
                    e.votes.len(),
                    e.nvotes
                );
                self.fail_election(why)?;
            } else {
                self.election = None;
            }
            return Ok(None);
        }
        if e.active {
            self.maybe_vote()?;
        }
        Ok(None)
    }

    pub(crate) fn election_deadline(&self) -> Option<u64> {
        // Once phase 1 has run out, only the election deadline is ahead: a
        // phase-1 deadline left in the past would make the host tick in a
        // busy loop while the site waits, unable to vote, for more sites.
        self.election.as_ref().map(|e| {
            if e.active && e.voted_for.is_none() && self.now < e.phase1_deadline {
                e.phase1_deadline.min(e.deadline)
            } else {
                e.deadline
            }
        })
    }
}

//! The master's peer table and the acknowledgement counting that decides
//! when a record is permanent. Knows nothing of `Core`: it is given the ack
//! policy, the group size and the time, and answers "how far do enough
//! acknowledgements reach" (etcd-io/raft's `tracker` and `quorum` packages
//! play this part there).

use crate::lsn::Lsn;
use crate::rep::config::{AckPolicy, RepConfig};
use crate::rep::types::Eid;

/// With heartbeats off, how long a client may leave a record unacknowledged
/// and still count as available (`AckPolicy::AllAvailable`).
pub(crate) const DEFAULT_AVAILABLE_US: u64 = 30_000_000;

/// What the master knows about one client.
#[derive(Clone, Debug, Default)]
pub(crate) struct Peer {
    /// The last LSN the client reported durable.
    pub acked: Lsn,
    /// The client's election priority, as its last ack reported it.
    pub priority: u32,
    /// When the master last heard from it.
    pub last_heard_us: u64,
    /// Since when the client has owed an acknowledgement for a record sent
    /// to it (`None`: it has acknowledged everything sent). Availability is
    /// judged from this, not from when we last heard from it: a client of
    /// an idle master sends nothing, yet is perfectly available.
    pub owed_since: Option<u64>,
    /// Not a member of the replicated group (a joiner catching up, a site
    /// removed): its acknowledgements count for nothing.
    pub excluded: bool,
}

/// The master's clients by id, in id order (as a `BTreeMap` would keep
/// them): a sorted vector, since a group has a handful of sites, one is
/// looked up on every message a master receives and all are walked on
/// every acknowledgement.
#[derive(Clone, Debug, Default)]
pub(crate) struct PeerMap(Vec<(Eid, Peer)>);

impl PeerMap {
    /// Number of clients.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Where `eid` is, or where it would go. A linear scan: shorter than
    /// a binary search's bookkeeping for the few sites of a group.
    #[inline]
    fn find(&self, eid: Eid) -> std::result::Result<usize, usize> {
        for (i, (e, _)) in self.0.iter().enumerate() {
            if *e >= eid {
                return if *e == eid { Ok(i) } else { Err(i) };
            }
        }
        Err(self.0.len())
    }

    /// The client `eid`, if known.
    pub fn get(&self, eid: &Eid) -> Option<&Peer> {
        let i = self.find(*eid).ok()?;
        Some(&self.0[i].1)
    }

    /// The client `eid`, mutably, if known.
    pub fn get_mut(&mut self, eid: &Eid) -> Option<&mut Peer> {
        let i = self.find(*eid).ok()?;
        Some(&mut self.0[i].1)
    }

    /// The client `eid`, added with default state if new and the table
    /// holds fewer than `max` clients; `None` for a new client past `max`
    /// (a sender's id alone must not grow the table without bound).
    #[inline]
    pub fn get_or_add(&mut self, eid: Eid, max: usize) -> Option<&mut Peer> {
        let i = match self.find(eid) {
            Ok(i) => i,
            Err(_) if self.0.len() >= max => return None,
            Err(i) => {
                self.0.insert(i, (eid, Peer::default()));
                i
            }
        };
        Some(&mut self.0[i].1)
    }

    /// The clients, in id order.
    pub fn values(&self) -> impl Iterator<Item = &Peer> {
        self.0.iter().map(|(_, p)| p)
    }

    /// The clients, in id order, mutably.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Peer> {
        self.0.iter_mut().map(|(_, p)| p)
    }

    /// Calls `f` on each client with its id.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(Eid, &mut Peer)) {
        for (e, p) in &mut self.0 {
            f(*e, p);
        }
    }

    /// Keeps only the clients whose id `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(Eid) -> bool) {
        self.0.retain(|(e, _)| keep(*e));
    }
}

/// Whose acknowledgements count toward permanence.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum AckFilter {
    /// Every client's.
    Any,
    /// Only electable (priority > 0) clients': those a later election could pick.
    Electable,
    /// Clients that owe no acknowledgement, or have owed one only since after this time.
    OwingSince(u64),
}

impl AckFilter {
    /// True if `p`'s acknowledgement counts.
    #[inline]
    pub fn counts(self, p: &Peer) -> bool {
        !p.excluded
            && match self {
                AckFilter::Any => true,
                AckFilter::Electable => p.priority > 0,
                AckFilter::OwingSince(t) => p.owed_since.map_or(true, |o| o > t),
            }
    }
}

/// How long a client may owe an acknowledgement and still count as available.
pub(crate) fn available_window(cfg: &RepConfig) -> u64 {
    if cfg.heartbeat_monitor_us > 0 {
        cfg.heartbeat_monitor_us
    } else {
        DEFAULT_AVAILABLE_US
    }
}

/// At most this many clients in a master's peer table while `nsites` is
/// not set: a sender's id alone must not grow the table without bound.
pub(crate) const PEERS_MAX_UNSET: usize = 64;

/// The size of the group the master counts against: the configured
/// `nsites`, or the sites it knows of when that is larger. With `nsites`
/// never set, at least two: a group whose size nobody gave is not taken to
/// be this site alone, so no commit counts as permanent with no replica.
#[inline]
pub(crate) fn group_size(cfg: &RepConfig, peers: &PeerMap) -> usize {
    let known = peers.len() + 1;
    if cfg.membership && cfg.nsites > 0 {
        // The replicated group: exactly its members (the peer table also
        // holds joiners and removed sites, which do not count).
        cfg.nsites as usize
    } else if cfg.nsites == 0 {
        known.max(2)
    } else {
        (cfg.nsites as usize).max(known)
    }
}

/// How many clients the peer table may hold: the other sites of `nsites`,
/// or [`PEERS_MAX_UNSET`] while it is not set.
#[inline]
pub(crate) fn peers_max(cfg: &RepConfig) -> usize {
    match cfg.nsites {
        0 => PEERS_MAX_UNSET,
        n if cfg.membership => n as usize - 1 + crate::rep::core::JOINERS_MAX,
        n => n as usize - 1,
    }
}

/// How many client acks make a record permanent under `cfg`'s policy, and
/// whose acks count. `AllAvailable` asks for every available client, and
/// for one when none is available (unless the group is this site alone):
/// with every client unreachable, local durability alone survives no
/// election.
#[inline]
pub(crate) fn acks_needed(cfg: &RepConfig, peers: &PeerMap, now: u64) -> (usize, AckFilter) {
    let nsites = group_size(cfg, peers);
    match cfg.ack_policy {
        AckPolicy::None => (0, AckFilter::Any),
        AckPolicy::One => (1, AckFilter::Any),
        AckPolicy::All => (nsites - 1, AckFilter::Any),
        AckPolicy::Quorum => (nsites / 2, AckFilter::Electable),
        AckPolicy::AllAvailable => {
            let since = now.saturating_sub(available_window(cfg));
            let filter = AckFilter::OwingSince(since);
            let n = peers.values().filter(|p| filter.counts(p)).count();
            if n == 0 && nsites > 1 {
                (1, AckFilter::Any)
            } else {
                (n, filter)
            }
        }
    }
}

/// The `n`-th largest acknowledged LSN among `peers` (n from 1), or `None`
/// when fewer than `n` peers count. Runs on every commit and every ack, so
/// small groups are handled on the stack.
pub(crate) fn nth_largest_ack<'a>(
    mut peers: impl Iterator<Item = &'a Peer>,
    n: usize,
) -> Option<Lsn> {
    debug_assert!(n > 0, "the 0th largest ack is asked for");
    if n == 1 {
        // One ack needed (QUORUM of three, ONE): the largest, without sorting.
        let first = peers.next()?.acked;
        return Some(peers.fold(first, |m, p| m.max(p.acked)));
    }
    const INLINE: usize = 16;
    let mut inline = [Lsn::ZERO; INLINE];
    let mut spill = Vec::new();
    let mut len = 0;
    for p in peers {
        if len < INLINE {
            inline[len] = p.acked;
        } else {
            if spill.is_empty() {
                spill.extend_from_slice(&inline);
            }
            spill.push(p.acked);
        }
        len += 1;
    }
    if len < n {
        return None;
    }
    let acks = if spill.is_empty() {
        &mut inline[..len]
    } else {
        &mut spill[..]
    };
    acks.sort_unstable_by(|a, b| b.cmp(a));
    Some(acks[n - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn peers_with(acks: &[(u32, u32)]) -> PeerMap {
        let mut map = PeerMap::default();
        for (i, &(a, prio)) in acks.iter().enumerate() {
            let p = map.get_or_add(i as Eid + 1, usize::MAX).expect("room");
            p.acked = Lsn::new(1, a);
            p.priority = prio;
        }
        map
    }

    proptest! {
        /// A PeerMap holds what a BTreeMap of the same inserts holds, in
        /// the same (id) order.
        #[test]
        fn peer_map_matches_btree_map(ops in proptest::collection::vec((0i32..12, 0u32..100), 0..60)) {
            let mut map = PeerMap::default();
            let mut model = std::collections::BTreeMap::<Eid, Peer>::new();
            for &(eid, prio) in &ops {
                map.get_or_add(eid, usize::MAX).expect("unbounded").priority = prio;
                model.entry(eid).or_default().priority = prio;
                prop_assert_eq!(map.len(), model.len());
            }
            let got: Vec<u32> = map.values().map(|p| p.priority).collect();
            let want: Vec<u32> = model.values().map(|p| p.priority).collect();
            prop_assert_eq!(got, want);
            for eid in -1i32..13 {
                prop_assert_eq!(map.get(&eid).map(|p| p.priority), model.get(&eid).map(|p| p.priority));
            }
        }

        /// A bounded table never holds more than its bound, and a known
        /// client is always found however full the table is.
        #[test]
        fn a_bounded_peer_map_stays_within_its_bound(
            ops in proptest::collection::vec(0i32..50, 0..80),
            max in 0usize..6,
        ) {
            let mut map = PeerMap::default();
            for &eid in &ops {
                let known = map.get(&eid).is_some();
                let got = map.get_or_add(eid, max).is_some();
                prop_assert!(map.len() <= max);
                prop_assert!(!known || got, "a known client was refused");
            }
        }

        /// The n-th largest ack is what sorting all acks in descending
        /// order and taking the n-th gives, on every path (one ack
        /// needed, a few, more peers than fit on the stack).
        #[test]
        fn nth_largest_ack_is_the_nth_of_the_sorted_acks(
            acks in proptest::collection::vec((0u32..4, 0u32..1000), 0..40),
            n in 1usize..8,
        ) {
            let peers: Vec<Peer> = acks
                .iter()
                .map(|&(f, o)| Peer { acked: Lsn::new(f, o), ..Peer::default() })
                .collect();
            let mut sorted: Vec<Lsn> = peers.iter().map(|p| p.acked).collect();
            sorted.sort_unstable_by(|a, b| b.cmp(a));
            prop_assert_eq!(nth_largest_ack(peers.iter(), n), sorted.get(n - 1).copied());
        }

        /// Under `Quorum`, the point the acks reach is held by a majority
        /// of the group counting the master: at least `nsites/2` electable
        /// clients acknowledged it.
        #[test]
        fn quorum_point_is_held_by_a_majority(
            acks in proptest::collection::vec((0u32..100, 0u32..3), 0..9),
            extra in 0u32..4,
        ) {
            let peers = peers_with(&acks);
            let cfg = RepConfig {
                nsites: acks.len() as u32 + 1 + extra,
                ack_policy: AckPolicy::Quorum,
                ..RepConfig::default()
            };
            let (need, filter) = acks_needed(&cfg, &peers, 0);
            let nsites = cfg.nsites as usize;
            prop_assert_eq!(need + 1, nsites / 2 + 1, "master plus the acks form a majority");
            if let Some(point) = nth_largest_ack(peers.values().filter(|p| filter.counts(p)), need.max(1)) {
                let holders = peers.values().filter(|p| p.priority > 0 && p.acked >= point).count();
                prop_assert!(holders >= need, "{holders} electable holders, {need} needed");
            }
        }

        /// `All` needs every other site of the group, known or not.
        #[test]
        fn all_needs_every_other_site(n in 0usize..8, nsites in 0u32..10) {
            let acks: Vec<(u32, u32)> = (0..n).map(|i| (i as u32, 1)).collect();
            let peers = peers_with(&acks);
            let cfg = RepConfig { nsites, ack_policy: AckPolicy::All, ..RepConfig::default() };
            let (need, _) = acks_needed(&cfg, &peers, 0);
            let group = if nsites == 0 { (n + 1).max(2) } else { (nsites as usize).max(n + 1) };
            prop_assert_eq!(need, group - 1);
        }
    }

    #[test]
    fn get_mut_changes_the_stored_client_and_only_a_known_one() {
        let mut map = peers_with(&[(5, 1), (6, 1), (7, 1)]);
        map.get_mut(&2).expect("client 2 is known").priority = 9;
        assert_eq!(map.get(&2).map(|p| p.priority), Some(9));
        assert_eq!(map.get(&1).map(|p| p.priority), Some(1));
        assert!(
            map.get_mut(&4).is_none(),
            "an unknown client is not made up"
        );
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn for_each_mut_visits_every_client_with_its_id_in_order() {
        let mut map = PeerMap::default();
        for eid in [3, 1, 2] {
            map.get_or_add(eid, usize::MAX).expect("room");
        }
        let mut seen = Vec::new();
        map.for_each_mut(|eid, p| {
            seen.push(eid);
            p.priority = eid as u32 * 10;
        });
        assert_eq!(seen, vec![1, 2, 3]);
        let prios: Vec<u32> = map.values().map(|p| p.priority).collect();
        assert_eq!(prios, vec![10, 20, 30]);
    }

    #[test]
    fn retain_drops_exactly_the_refused_clients() {
        let mut map = peers_with(&[(5, 1), (6, 2), (7, 3)]);
        map.retain(|eid| eid != 2);
        assert_eq!(map.len(), 2);
        assert!(map.get(&2).is_none());
        assert_eq!(map.get(&1).map(|p| p.priority), Some(1));
        assert_eq!(map.get(&3).map(|p| p.priority), Some(3));
    }

    #[test]
    fn ack_filters_count_what_they_say() {
        let peer = |priority, owed_since, excluded| Peer {
            priority,
            owed_since,
            excluded,
            ..Peer::default()
        };
        // Any: every member, never an excluded site.
        assert!(AckFilter::Any.counts(&peer(0, Some(0), false)));
        assert!(!AckFilter::Any.counts(&peer(1, None, true)));
        // Electable: priority above zero only.
        assert!(AckFilter::Electable.counts(&peer(1, None, false)));
        assert!(!AckFilter::Electable.counts(&peer(0, None, false)));
        assert!(!AckFilter::Electable.counts(&peer(1, None, true)));
        // OwingSince(t): owes nothing, or has owed only since after t.
        let f = AckFilter::OwingSince(10);
        assert!(f.counts(&peer(0, None, false)));
        assert!(f.counts(&peer(0, Some(11), false)));
        assert!(
            !f.counts(&peer(0, Some(10), false)),
            "owing since exactly t is out"
        );
        assert!(!f.counts(&peer(0, Some(9), false)));
        assert!(!f.counts(&peer(0, None, true)));
    }

    #[test]
    fn the_available_window_is_the_heartbeat_monitor_when_set() {
        let off = RepConfig {
            heartbeat_monitor_us: 0,
            ..RepConfig::default()
        };
        assert_eq!(available_window(&off), DEFAULT_AVAILABLE_US);
        let on = RepConfig {
            heartbeat_monitor_us: 5_000,
            ..RepConfig::default()
        };
        assert_eq!(available_window(&on), 5_000);
    }

    #[test]
    fn with_membership_the_group_is_exactly_nsites() {
        // Six clients known (members, joiners, removed sites), three members.
        let peers = peers_with(&[(1, 1); 6]);
        let cfg = RepConfig {
            membership: true,
            nsites: 3,
            ..RepConfig::default()
        };
        assert_eq!(group_size(&cfg, &peers), 3);
        let plain = RepConfig {
            membership: false,
            ..cfg.clone()
        };
        assert_eq!(
            group_size(&plain, &peers),
            7,
            "without membership, every known site counts"
        );
        let unset = RepConfig {
            nsites: 0,
            ..cfg.clone()
        };
        assert_eq!(group_size(&unset, &PeerMap::default()), 2);
    }

    #[test]
    fn the_peer_table_bound_follows_nsites_and_membership() {
        let mut cfg = RepConfig {
            nsites: 0,
            ..RepConfig::default()
        };
        assert_eq!(peers_max(&cfg), PEERS_MAX_UNSET);
        cfg.membership = true;
        assert_eq!(peers_max(&cfg), PEERS_MAX_UNSET);
        cfg.nsites = 5;
        assert_eq!(peers_max(&cfg), 4 + crate::rep::core::JOINERS_MAX);
        cfg.membership = false;
        assert_eq!(peers_max(&cfg), 4);
    }

    #[test]
    fn all_available_needs_every_available_client() {
        let mut peers = peers_with(&[(5, 1), (6, 1), (7, 1)]);
        peers.get_mut(&3).expect("known").owed_since = Some(0);
        let cfg = RepConfig {
            nsites: 4,
            ack_policy: AckPolicy::AllAvailable,
            ..RepConfig::default()
        };
        let now = available_window(&cfg) + 1;
        assert_eq!(
            acks_needed(&cfg, &peers, now),
            (2, AckFilter::OwingSince(1)),
            "clients 1 and 2 owe nothing; client 3 has owed too long"
        );
    }

    #[test]
    fn all_available_with_nobody_available_waits_for_a_client() {
        let mut peers = peers_with(&[(5, 1), (6, 1)]);
        for p in peers.values_mut() {
            p.owed_since = Some(0);
        }
        let cfg = RepConfig {
            nsites: 3,
            ack_policy: AckPolicy::AllAvailable,
            ..RepConfig::default()
        };
        let now = available_window(&cfg) + 1;
        assert_eq!(acks_needed(&cfg, &peers, now), (1, AckFilter::Any));
        let lone = RepConfig {
            nsites: 1,
            ..cfg.clone()
        };
        assert_eq!(acks_needed(&lone, &PeerMap::default(), now).0, 0);
    }

    #[test]
    fn an_unset_nsites_never_needs_zero_acks_but_under_none() {
        for policy in [
            AckPolicy::All,
            AckPolicy::AllAvailable,
            AckPolicy::Quorum,
            AckPolicy::One,
        ] {
            let cfg = RepConfig {
                nsites: 0,
                ack_policy: policy,
                ..RepConfig::default()
            };
            assert!(
                acks_needed(&cfg, &PeerMap::default(), 0).0 >= 1,
                "{policy:?}"
            );
        }
        let none = RepConfig {
            ack_policy: AckPolicy::None,
            ..RepConfig::default()
        };
        assert_eq!(acks_needed(&none, &PeerMap::default(), 0).0, 0);
    }
}

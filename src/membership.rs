//! The replicated group membership: which sites form the group, where each
//! can be reached, and whether each may become master.
//!
//! The value is replicated state. A master changes it by appending a
//! membership record (the whole new group, encoded as below) to its log;
//! every site applies that record like a commit, so its store always holds
//! the group its log implies, and checkpoints, snapshots, rollbacks and
//! restarts carry the group with the data. The protocol rules for changing
//! it live in `rep::core::membership`; this module is only the value and
//! its byte format.
//!
//! Encoding (little-endian): `u32` member count, then per member in
//! strictly increasing eid order: `i32` eid (never negative), `u8`
//! electable (0 or 1), `u32` address length, the address bytes.

use byteorder::{ByteOrder, LittleEndian};

use crate::error::{Error, Result};

/// At most this many sites in a group.
pub const MEMBERS_MAX: usize = 255;
/// At most this many bytes in a member's advertised address.
pub const ADDR_MAX: usize = 1024;

/// The longest encoding a valid membership can have.
pub const fn encoded_len_max() -> usize {
    4 + MEMBERS_MAX * (9 + ADDR_MAX)
}

/// One site of the group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Member {
    /// The site's environment id (`rep_set_transport`'s local eid).
    pub eid: i32,
    /// Where the site can be reached: opaque bytes to the library (the
    /// `net` host puts its listen address here).
    pub addr: Vec<u8>,
    /// May this site become master? A non-electable member still votes and
    /// counts towards the group's size, like a Berkeley DB site of priority 0.
    pub electable: bool,
}

/// The sites of a group, in eid order, each eid once.
///
/// ```
/// use dbrep::membership::{Member, Membership};
///
/// let g = Membership::default()
///     .with_added(Member { eid: 1, addr: b"10.0.0.1:5551".to_vec(), electable: true })
///     .unwrap();
/// let bytes = g.encode();
/// assert_eq!(Membership::decode(&bytes).unwrap(), g);
/// assert_eq!(g.majority(), 1);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Membership {
    members: Vec<Member>,
}

impl Membership {
    /// The members, in eid order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Number of sites.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True for a group of no sites (not yet formed).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The member `eid`, if it is one.
    pub fn get(&self, eid: i32) -> Option<&Member> {
        self.members
            .binary_search_by_key(&eid, |m| m.eid)
            .ok()
            .map(|i| &self.members[i])
    }

    /// True if `eid` is a member.
    pub fn contains(&self, eid: i32) -> bool {
        self.get(eid).is_some()
    }

    /// How many sites make a majority of this group.
    pub fn majority(&self) -> usize {
        Self::majority_of(self.members.len())
    }

    /// How many sites make a majority of a group of `n`.
    pub fn majority_of(n: usize) -> usize {
        n / 2 + 1
    }

    /// This group with `m` added. Refused for an eid already present, a
    /// negative eid, an address over [`ADDR_MAX`] or a group already of
    /// [`MEMBERS_MAX`] sites.
    pub fn with_added(&self, m: Member) -> Result<Membership> {
        if m.eid < 0 {
            return Err(Error::invalid(format!(
                "a member's eid must be >= 0, got {}",
                m.eid
            )));
        }
        if m.addr.len() > ADDR_MAX {
            return Err(Error::invalid(format!(
                "site {}'s address is {} bytes, at most {ADDR_MAX} are allowed",
                m.eid,
                m.addr.len()
            )));
        }
        if self.members.len() >= MEMBERS_MAX {
            return Err(Error::invalid(format!(
                "the group already has {MEMBERS_MAX} sites, the most it may hold"
            )));
        }
        match self.members.binary_search_by_key(&m.eid, |x| x.eid) {
            Ok(_) => Err(Error::invalid(format!(
                "site {} is already a member of the group",
                m.eid
            ))),
            Err(i) => {
                let mut members = self.members.clone();
                members.insert(i, m);
                Ok(Membership { members })
            }
        }
    }

    /// This group without `eid`; refused if it is not a member.
    pub fn without(&self, eid: i32) -> Result<Membership> {
        match self.members.binary_search_by_key(&eid, |x| x.eid) {
            Ok(i) => {
                let mut members = self.members.clone();
                members.remove(i);
                Ok(Membership { members })
            }
            Err(_) => Err(Error::invalid(format!(
                "site {eid} is not a member of the group"
            ))),
        }
    }

    /// The byte format (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(4 + self.members.iter().map(|m| 9 + m.addr.len()).sum::<usize>());
        out.extend_from_slice(&(self.members.len() as u32).to_le_bytes());
        for m in &self.members {
            out.extend_from_slice(&m.eid.to_le_bytes());
            out.push(u8::from(m.electable));
            out.extend_from_slice(&(m.addr.len() as u32).to_le_bytes());
            out.extend_from_slice(&m.addr);
        }
        out
    }

    /// Decodes and checks the byte format: anything [`Membership::encode`]
    /// could not have produced is [`Error::Malformed`], naming the byte.
    pub fn decode(b: &[u8]) -> Result<Membership> {
        let bad = |at: usize, what: String| {
            Error::malformed(format!("membership: {what} (at byte {at})"))
        };
        let take = |pos: &mut usize, n: usize, what: &str| -> Result<&[u8]> {
            if b.len() - *pos < n {
                return Err(bad(*pos, format!("truncated {what}")));
            }
            let s = &b[*pos..*pos + n];
            *pos += n;
            Ok(s)
        };
        let mut pos = 0;
        let count = LittleEndian::read_u32(take(&mut pos, 4, "member count")?) as usize;
        if count > MEMBERS_MAX {
            return Err(bad(0, format!("{count} members, at most {MEMBERS_MAX}")));
        }
        let mut members: Vec<Member> = Vec::with_capacity(count);
        for _ in 0..count {
            let at = pos;
            let eid = LittleEndian::read_i32(take(&mut pos, 4, "eid")?);
            if eid < 0 || members.last().is_some_and(|p| p.eid >= eid) {
                return Err(bad(at, format!("eid {eid} negative or out of order")));
            }
            let electable = match take(&mut pos, 1, "electable flag")?[0] {
                0 => false,
                1 => true,
                v => {
                    return Err(bad(
                        at + 4,
                        format!("electable flag {v} is neither 0 nor 1"),
                    ))
                }
            };
            let len = LittleEndian::read_u32(take(&mut pos, 4, "address length")?) as usize;
            if len > ADDR_MAX {
                return Err(bad(
                    at + 5,
                    format!("address of {len} bytes, at most {ADDR_MAX}"),
                ));
            }
            let addr = take(&mut pos, len, "address")?.to_vec();
            members.push(Member {
                eid,
                addr,
                electable,
            });
        }
        if pos != b.len() {
            return Err(bad(pos, format!("{} trailing bytes", b.len() - pos)));
        }
        Ok(Membership { members })
    }
}

impl std::fmt::Display for Membership {
    /// `1@10.0.0.1:5551 2@10.0.0.2:5551(view)`: eid, address (lossy UTF-8),
    /// and `(view)` for a member that may not become master.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, m) in self.members.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}@{}", m.eid, String::from_utf8_lossy(&m.addr))?;
            if !m.electable {
                f.write_str("(view)")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member(eid: i32) -> Member {
        Member {
            eid,
            addr: format!("h{eid}:1").into_bytes(),
            electable: eid % 2 == 0,
        }
    }

    #[test]
    fn add_and_remove_keep_order_and_refuse_duplicates() {
        let g = Membership::default()
            .with_added(member(3))
            .unwrap()
            .with_added(member(1))
            .unwrap();
        assert_eq!(
            g.members().iter().map(|m| m.eid).collect::<Vec<_>>(),
            [1, 3]
        );
        assert!(g.with_added(member(3)).is_err());
        assert!(g.without(2).is_err());
        assert_eq!(g.without(1).unwrap().len(), 1);
        assert_eq!(g.majority(), 2);
        assert_eq!(g.to_string(), "1@h1:1(view) 3@h3:1(view)");
    }

    #[test]
    fn decode_refuses_damage() {
        let g = Membership::default()
            .with_added(member(1))
            .unwrap()
            .with_added(member(2))
            .unwrap();
        let b = g.encode();
        assert!(Membership::decode(&b[..b.len() - 1]).is_err());
        let mut extra = b.clone();
        extra.push(0);
        assert!(Membership::decode(&extra).is_err());
        let mut swapped = b.clone();
        swapped[4..8].copy_from_slice(&5i32.to_le_bytes());
        assert!(Membership::decode(&swapped).is_err(), "out of order");
        let mut flag = b;
        flag[8] = 7;
        assert!(Membership::decode(&flag).is_err());
        assert!(Membership::decode(&u32::MAX.to_le_bytes()).is_err());
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(eids in proptest::collection::btree_set(0i32..1000, 0..20)) {
            let mut g = Membership::default();
            for e in eids {
                g = g.with_added(member(e)).unwrap();
            }
            prop_assert_eq!(Membership::decode(&g.encode()).unwrap(), g);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Membership::decode(&bytes);
        }
    }
}

//! A linearizability checker for one register (one key), in the style of
//! Wing & Gong with Lowe's memoisation (as in Porcupine).
//!
//! A history is a list of operations, each with an invocation time and,
//! if it completed, a response time. Writes set the register (a delete
//! writes "absent", `None`); reads return what they saw. A write that never
//! completed may take effect at any time after its invocation, or never: it
//! gets an infinite response time, so the search may always place it after
//! everything else, where it constrains nothing. Reads that did not complete
//! are left out by the caller.
//!
//! The search linearizes, one at a time, an operation whose invocation is
//! not later than every pending operation's response (ties count as
//! concurrent), checking reads against the register's value, and memoises
//! (set of linearized operations, value) pairs already explored. It gives up
//! (inconclusive) after a bounded number of states.

use std::collections::HashSet;

/// One operation on a register of optional byte strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegOp {
    /// Invocation time.
    pub inv: u64,
    /// Response time; `None` for a write that never completed.
    pub resp: Option<u64>,
    /// Write (the value written) or read (the value read).
    pub kind: RegKind,
    /// Free text for reports (site, step, ...).
    pub note: String,
}

/// What an operation does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegKind {
    /// Sets the register (`None` = delete).
    Write(Option<Vec<u8>>),
    /// Observed the register.
    Read(Option<Vec<u8>>),
}

/// The checker's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Some linearization exists.
    Ok,
    /// None exists.
    Violation,
    /// The search hit its state bound.
    Inconclusive,
}

/// Checks a register history starting from `initial`, exploring at most
/// `max_states` memoised states.
pub fn check_register(initial: Option<&[u8]>, ops: &[RegOp], max_states: usize) -> Verdict {
    // Intern values: 0 is "absent".
    let mut values: Vec<Vec<u8>> = Vec::new();
    let mut intern = |v: &Option<Vec<u8>>| -> u32 {
        match v {
            None => 0,
            Some(b) => {
                if let Some(i) = values.iter().position(|x| x == b) {
                    i as u32 + 1
                } else {
                    values.push(b.clone());
                    values.len() as u32
                }
            }
        }
    };
    let init = intern(&initial.map(<[u8]>::to_vec));
    let ops: Vec<Op> = ops
        .iter()
        .map(|o| {
            let (write, v) = match &o.kind {
                RegKind::Write(v) => (true, intern(v)),
                RegKind::Read(v) => (false, intern(v)),
            };
            Op {
                inv: o.inv,
                resp: o.resp.unwrap_or(u64::MAX),
                write,
                v,
            }
        })
        .collect();
    let mut s = Search {
        ops: &ops,
        done: vec![0u64; ops.len().div_ceil(64)],
        left: ops.len(),
        seen: HashSet::new(),
        max_states,
        gave_up: false,
    };
    if s.dfs(init) {
        Verdict::Ok
    } else if s.gave_up {
        Verdict::Inconclusive
    } else {
        Verdict::Violation
    }
}

struct Op {
    inv: u64,
    resp: u64,
    write: bool,
    v: u32,
}

struct Search<'a> {
    ops: &'a [Op],
    done: Vec<u64>,
    left: usize,
    seen: HashSet<(Vec<u64>, u32)>,
    max_states: usize,
    gave_up: bool,
}

impl Search<'_> {
    fn is_done(&self, i: usize) -> bool {
        self.done[i / 64] & (1 << (i % 64)) != 0
    }
    fn flip(&mut self, i: usize) {
        self.done[i / 64] ^= 1 << (i % 64);
    }

    fn dfs(&mut self, value: u32) -> bool {
        if self.left == 0 {
            return true;
        }
        // Only incomplete writes left: they may never take effect.
        let min_resp = (0..self.ops.len())
            .filter(|&i| !self.is_done(i))
            .map(|i| self.ops[i].resp)
            .min()
            .unwrap_or(u64::MAX);
        if min_resp == u64::MAX {
            return true;
        }
        if !self.seen.insert((self.done.clone(), value)) {
            return false;
        }
        if self.seen.len() > self.max_states {
            self.gave_up = true;
            return false;
        }
        for i in 0..self.ops.len() {
            if self.is_done(i) || self.ops[i].inv > min_resp {
                continue;
            }
            let op = &self.ops[i];
            let next = if op.write {
                op.v
            } else if op.v == value {
                value
            } else {
                continue;
            };
            self.flip(i);
            self.left -= 1;
            let ok = self.dfs(next);
            self.flip(i);
            self.left += 1;
            if ok {
                return true;
            }
            if self.gave_up {
                return false;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(inv: u64, resp: Option<u64>, v: Option<&str>) -> RegOp {
        RegOp {
            inv,
            resp,
            kind: RegKind::Write(v.map(|s| s.as_bytes().to_vec())),
            note: String::new(),
        }
    }
    fn r(inv: u64, resp: u64, v: Option<&str>) -> RegOp {
        RegOp {
            inv,
            resp: Some(resp),
            kind: RegKind::Read(v.map(|s| s.as_bytes().to_vec())),
            note: String::new(),
        }
    }

    #[test]
    fn linearizable_history_passes() {
        let h = [
            w(0, Some(10), Some("a")),
            r(5, 6, None), // concurrent with the write: may see the old value
            r(11, 12, Some("a")),
            w(13, Some(20), Some("b")),
            r(14, 15, Some("b")), // concurrent: may see the new value
            r(16, 17, Some("b")), // then may not go back to "a"
            w(21, Some(22), None),
            r(23, 24, None),
        ];
        assert_eq!(check_register(None, &h, 100_000), Verdict::Ok);
    }

    #[test]
    fn stale_read_after_completed_write_fails() {
        let h = [
            w(0, Some(10), Some("a")),
            w(11, Some(20), Some("b")),
            r(21, 22, Some("a")),
        ];
        assert_eq!(check_register(None, &h, 100_000), Verdict::Violation);
        let h = [w(0, Some(10), Some("a")), r(11, 12, None)];
        assert_eq!(check_register(None, &h, 100_000), Verdict::Violation);
    }

    #[test]
    fn no_going_back_between_concurrent_reads() {
        // Both reads overlap the write, but once "b" was seen "a" cannot be.
        let h = [
            w(0, Some(1), Some("a")),
            w(2, Some(100), Some("b")),
            r(10, 20, Some("b")),
            r(30, 40, Some("a")),
        ];
        assert_eq!(check_register(None, &h, 100_000), Verdict::Violation);
    }

    #[test]
    fn read_of_unwritten_value_fails() {
        let h = [r(0, 1, Some("x"))];
        assert_eq!(check_register(None, &h, 100_000), Verdict::Violation);
        // A read may not see a write invoked after it returned.
        let h = [r(0, 1, Some("x")), w(2, Some(3), Some("x"))];
        assert_eq!(check_register(None, &h, 100_000), Verdict::Violation);
    }

    #[test]
    fn incomplete_write_may_or_may_not_take_effect() {
        // Never seen: fine.
        let h = [
            w(0, Some(1), Some("a")),
            w(2, None, Some("b")),
            r(10, 11, Some("a")),
        ];
        assert_eq!(check_register(None, &h, 100_000), Verdict::Ok);
        // Seen long after its invocation: fine.
        let h = [
            w(0, Some(1), Some("a")),
            w(2, None, Some("b")),
            r(10, 11, Some("a")),
            r(50, 51, Some("b")),
        ];
        assert_eq!(check_register(None, &h, 100_000), Verdict::Ok);
        // But once seen it stays in effect (until a later write).
        let h = [
            w(0, Some(1), Some("a")),
            w(2, None, Some("b")),
            r(10, 11, Some("b")),
            r(50, 51, Some("a")),
        ];
        assert_eq!(check_register(None, &h, 100_000), Verdict::Violation);
        // And it cannot take effect before its invocation.
        let h = [
            w(0, Some(1), Some("a")),
            r(3, 4, Some("b")),
            w(5, None, Some("b")),
        ];
        assert_eq!(check_register(None, &h, 100_000), Verdict::Violation);
    }

    #[test]
    fn bound_gives_inconclusive_not_violation() {
        let mut h = Vec::new();
        for i in 0..40u64 {
            h.push(w(0, Some(1000), Some(&format!("v{i}"))));
        }
        h.push(r(2000, 2001, Some("nope")));
        assert_eq!(check_register(None, &h, 50), Verdict::Inconclusive);
    }
}

//! Back-off for a request that may go unanswered (a gap fill, a verify, a
//! snapshot chunk, a master search): the first retry after a minimum wait,
//! then at doubling intervals up to a maximum, as Berkeley DB's
//! `rep_set_request` bounds describe.

/// When a request is next due, and how often it has been repeated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Retry {
    /// The time (host microseconds) the request is due again.
    pub next_at: u64,
    /// The wait that led to `next_at`; doubles at each firing.
    pub interval: u64,
    /// How many times the request was repeated.
    pub count: u32,
}

impl Retry {
    /// A request sent at `now`, due again after `delay`.
    pub fn new(now: u64, delay: u64) -> Retry {
        Retry {
            next_at: now.saturating_add(delay),
            interval: delay.max(1),
            count: 0,
        }
    }

    /// True once the wait has run out.
    pub fn due(&self, now: u64) -> bool {
        now >= self.next_at
    }

    /// The request was repeated at `now`: the next wait doubles, up to `max`.
    pub fn fired(&mut self, now: u64, max: u64) {
        self.count += 1;
        self.interval = self.interval.saturating_mul(2).min(max.max(1));
        self.next_at = now.saturating_add(self.interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_up_to_the_maximum() {
        let mut r = Retry::new(100, 10);
        assert!(!r.due(109));
        assert!(r.due(110));
        let mut waits = Vec::new();
        for _ in 0..6 {
            let now = r.next_at;
            r.fired(now, 80);
            waits.push(r.next_at - now);
        }
        assert_eq!(waits, vec![20, 40, 80, 80, 80, 80]);
        assert_eq!(r.count, 6);
    }

    #[test]
    fn a_zero_delay_still_moves_forward() {
        let mut r = Retry::new(5, 0);
        assert!(r.due(5));
        r.fired(5, 0);
        assert_eq!(r.next_at, 6, "a zero maximum must not make a busy loop");
    }
}

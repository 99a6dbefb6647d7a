//! Exponential back-off with jitter, for reconnects and election retries.

use std::time::Duration;

/// Doubling waits between `min` and `max`, each drawn at random from the
/// upper half of the current step, so sites that failed together do not
/// retry together.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
    rng: u64,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration, seed: u64) -> Backoff {
        let min = min.max(Duration::from_millis(1));
        Backoff {
            min,
            max: max.max(min),
            step: min,
            rng: seed | 1,
        }
    }

    /// The next wait; the one after it is twice as long, up to the cap.
    pub fn next_wait(&mut self) -> Duration {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        let frac = r as f64 / (1u64 << 53) as f64;
        let wait = self.step.mul_f64(0.5 + 0.5 * frac);
        self.step = (self.step * 2).min(self.max);
        wait
    }

    /// Back to the shortest wait (after a success).
    pub fn reset(&mut self) {
        self.step = self.min;
    }
}

/// A seed that differs between sites and runs.
pub(crate) fn seed(eid: i32) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ ((eid as u64) << 40) ^ u64::from(std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_with_jitter_up_to_the_cap_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(80), 42);
        let steps = [10, 20, 40, 80, 80, 80];
        for step in steps {
            let w = b.next_wait();
            let step = Duration::from_millis(step);
            assert!(
                w >= step / 2 && w <= step,
                "{w:?} outside ({:?}, {step:?})",
                step / 2
            );
        }
        b.reset();
        assert!(b.next_wait() <= Duration::from_millis(10));
    }
}

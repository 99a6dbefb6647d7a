//! Per-site clocks: offset and rate against the simulated global time.

/// A site's own clock: local time = `offset_us` + global time x `rate_ppm` / 1e6.
/// It never runs backwards: jumps only move the offset forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SiteClock {
    /// Added to the scaled global time.
    pub offset_us: u64,
    /// Rate in parts per million (1,000,000 = the global rate).
    pub rate_ppm: u64,
}

impl Default for SiteClock {
    fn default() -> Self {
        SiteClock {
            offset_us: 0,
            rate_ppm: 1_000_000,
        }
    }
}

impl SiteClock {
    /// Local time at global time `g`.
    pub fn local(&self, g: u64) -> u64 {
        let scaled = (u128::from(g) * u128::from(self.rate_ppm) / 1_000_000) as u64;
        self.offset_us.saturating_add(scaled)
    }
    /// The earliest global time at which local time reaches `l`.
    pub fn global(&self, l: u64) -> u64 {
        if l == u64::MAX {
            return u64::MAX;
        }
        let d = u128::from(l.saturating_sub(self.offset_us));
        let rate = u128::from(self.rate_ppm.max(1));
        let g = (d * 1_000_000).div_ceil(rate);
        u64::try_from(g).unwrap_or(u64::MAX)
    }
}

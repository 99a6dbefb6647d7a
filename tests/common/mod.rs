//! Helpers shared by the integration tests (`mod common;` in a test file).
//! Each test binary uses only some of them.
#![allow(dead_code)]

use dbrep::testing::testkit::short_timeouts;
use dbrep::{Eid, EnvConfig};

/// A number from the environment variable `name`, if set and valid.
pub fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// [`short_timeouts`] for every site of a test-kit cluster.
pub fn small_timeouts(nsites: u32) -> impl Fn(Eid) -> EnvConfig {
    move |_| short_timeouts(nsites)
}

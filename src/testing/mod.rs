//! Test support, compiled only with the cargo feature `testing`: the
//! deterministic test kit ([`testkit::Cluster`]), the simulator ([`sim`]) and
//! the simulated file system ([`SimFs`]).
//!
//! None of it is part of an application's surface. The crate's own test
//! suite turns the feature on through a dev-dependency on itself, so a plain
//! `cargo test` runs the simulator; another crate's tests can enable it the
//! same way: `dbrep = { version = "…", features = ["testing"] }` under
//! `[dev-dependencies]`.

pub mod sim;
pub mod sim_fs;
pub mod testkit;

pub use sim_fs::{CrashMode, SimFs};

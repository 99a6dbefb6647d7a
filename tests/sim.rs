//! The deterministic simulator over many seeds (see `dbrep::sim`).
//!
//! `DBREP_SIM_SEEDS=<count>` sets how many seeds each of the four seed-range
//! tests runs (default 500 each, 2,000 in all), `DBREP_SIM_SEED=<first>`
//! where they start. With `DBREP_SIM_SEEDS=1` only the first test runs the
//! given seed, so `DBREP_SIM_SEED=1234 DBREP_SIM_SEEDS=1 cargo test --test sim
//! -- --nocapture` replays one run exactly.

use std::time::Instant;

use dbrep::sim::{run_seed, FaultSet, Outcome, Plan, Sim};

const PARTS: u64 = 4;
const DEFAULT_PER_PART: u64 = 500;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Runs part `part` of the seed range and fails with every violation found.
fn run_part(part: u64) {
    let first = env_u64("DBREP_SIM_SEED").unwrap_or(0);
    let count = env_u64("DBREP_SIM_SEEDS").unwrap_or(DEFAULT_PER_PART * PARTS);
    // Split [first, first + count) into PARTS interleaved-free chunks.
    let per = count.div_ceil(PARTS);
    let start = first + part * per;
    let end = (start + per).min(first + count);
    if start >= end {
        return;
    }
    let faults = FaultSet::default_mix();
    let t0 = Instant::now();
    let mut sim_us = 0u64;
    let mut commits = 0usize;
    let mut perm = 0usize;
    let mut failures = Vec::new();
    for seed in start..end {
        match run_seed(seed, &faults) {
            Ok(o) => {
                sim_us += o.sim_us;
                commits += o.commits;
                perm += o.perm_commits;
            }
            Err(v) => {
                eprintln!("SIMULATOR VIOLATION\n{v}");
                failures.push(v.seed);
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let n = end - start;
    eprintln!(
        "sim part {part}: seeds {start}..{end}: {n} runs in {secs:.1} s ({:.1} seeds/s), {:.2} simulated hours, {commits} commits ({perm} reported permanent)",
        n as f64 / secs,
        sim_us as f64 / 3.6e9
    );
    assert!(
        failures.is_empty(),
        "simulator found violations at seeds {failures:?}; replay one with DBREP_SIM_SEED=<seed> DBREP_SIM_SEEDS=1 cargo test --test sim -- --nocapture"
    );
}

#[test]
fn sim_seeds_part0() {
    run_part(0);
}

#[test]
fn sim_seeds_part1() {
    run_part(1);
}

#[test]
fn sim_seeds_part2() {
    run_part(2);
}

#[test]
fn sim_seeds_part3() {
    run_part(3);
}

#[test]
fn same_seed_same_run() {
    for seed in [7u64, 12345, 99] {
        let a: Outcome = run_seed(seed, &FaultSet::default_mix()).expect("seed passes");
        let b: Outcome = run_seed(seed, &FaultSet::default_mix()).expect("seed passes");
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}: trace differs");
        assert_eq!(a.digests, b.digests, "seed {seed}: final digests differ");
        assert_eq!(a.sim_us, b.sim_us);
        assert_eq!(a.delivered, b.delivered);
    }
    // And different seeds do different things.
    let a = run_seed(1, &FaultSet::default_mix()).expect("seed passes");
    let b = run_seed(2, &FaultSet::default_mix()).expect("seed passes");
    assert_ne!(a.trace_hash, b.trace_hash);
}

/// The checker can fail: with a disk that loses synced data at a crash, the
/// simulator finds a lost permanent commit within its seed budget.
#[test]
fn checker_catches_lying_disk() {
    let mut faults = FaultSet::default_mix();
    faults.lying_disk = true;
    let mut found = None;
    for seed in 0..300 {
        if let Err(v) = run_seed(seed, &faults) {
            found = Some(v);
            break;
        }
    }
    let v = found.expect("a lying disk must break some invariant within 300 seeds");
    eprintln!("lying disk caught as expected:\n{v}");
}

/// The checker can fail: a host that starts masters by hand, against the
/// rules, produces two masters in one generation or a lost permanent commit.
#[test]
fn checker_catches_rogue_master() {
    let mut faults = FaultSet::default_mix();
    faults.rogue_master = true;
    let mut found = None;
    for seed in 0..300 {
        if let Err(v) = run_seed(seed, &faults) {
            found = Some(v);
            break;
        }
    }
    let v = found.expect("rogue masters must break some invariant within 300 seeds");
    eprintln!("rogue master caught as expected:\n{v}");
}

/// A plan is a pure function of its seed.
#[test]
fn plans_are_deterministic() {
    let f = FaultSet::default_mix();
    for seed in 0..50 {
        let a = Plan::from_seed(seed, &f);
        let b = Plan::from_seed(seed, &f);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert!([3, 5, 7].contains(&a.n));
        let electable = a.priorities[..a.n].iter().filter(|&&p| p > 0).count();
        assert!(electable > a.n / 2, "seed {seed}: {a:?}");
    }
    let _ = Sim::new(Plan::from_seed(0, &f));
}

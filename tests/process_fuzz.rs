//! `rep_process_message` fed arbitrary bytes, on a site in every role: no
//! panic, whatever arrives. Messages are either raw garbage or carry a valid
//! control header (any type, flags, generations and LSN) with a random body,
//! so they get past the header checks into the handlers. A longer run of the
//! same idea is the `process_message` cargo-fuzz target (see README).

use dbrep::log::LogConfig;
use dbrep::rep::{Core, RepConfig, StartAs};
use dbrep::storage::Storage;
use dbrep::wire::{MAGIC, WIRE_VERSION};
use proptest::prelude::*;

fn valid_control(
    mtype: u8,
    flags: u8,
    gen: u32,
    egen: u32,
    lsn: (u32, u32),
    rec_len: usize,
) -> Vec<u8> {
    let mut c = Vec::with_capacity(28);
    c.extend_from_slice(&MAGIC);
    c.extend_from_slice(&WIRE_VERSION.to_le_bytes());
    c.push(mtype);
    c.push(flags & 0x1f);
    c.extend_from_slice(&[0, 0]);
    c.extend_from_slice(&gen.to_le_bytes());
    c.extend_from_slice(&egen.to_le_bytes());
    c.extend_from_slice(&lsn.0.to_le_bytes());
    c.extend_from_slice(&lsn.1.to_le_bytes());
    c.extend_from_slice(&(rec_len as u32).to_le_bytes());
    c
}

fn arb_message() -> impl Strategy<Value = (i32, Vec<u8>, Vec<u8>)> {
    let garbage = (
        0i32..4,
        prop::collection::vec(any::<u8>(), 0..40),
        prop::collection::vec(any::<u8>(), 0..64),
    );
    let headed = (
        0i32..4,
        1u8..=19,
        any::<u8>(),
        0u32..4,
        0u32..4,
        (0u32..3, 0u32..400),
        prop::collection::vec(any::<u8>(), 0..160),
    )
        .prop_map(|(from, t, f, gen, egen, lsn, rec)| {
            let control = valid_control(t, f, gen, egen, lsn, rec.len());
            (from, control, rec)
        });
    prop_oneof![garbage, headed]
}

fn site(role: u8) -> Core {
    let cfg = LogConfig {
        in_memory: true,
        ..LogConfig::default()
    };
    let rep = RepConfig {
        nsites: 3,
        ..RepConfig::default()
    };
    let mut core = Core::new(Storage::in_memory(cfg), Default::default(), rep).unwrap();
    core.set_local_eid(1).unwrap();
    match role {
        0 => {}
        1 => core.start(0, StartAs::Client, b"c").unwrap(),
        _ => {
            core.start(0, StartAs::Master, b"m").unwrap();
            let put = [1, 0, 0, 0, 1, 1, 0, 0, 0, b'k', 1, 0, 0, 0, b'v'];
            core.commit(1, &put).unwrap();
        }
    }
    core
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]
    #[test]
    fn any_messages_in_any_role_never_panic(role in 0u8..3, msgs in prop::collection::vec(arb_message(), 1..12)) {
        let mut core = site(role);
        let mut now = 10;
        for (from, control, rec) in msgs {
            let before = core.storage().log().last_lsn();
            let r = core.process(now, &control, &rec, from);
            if r.is_err() {
                // A rejected message leaves the log as it was.
                prop_assert_eq!(core.storage().log().last_lsn(), before);
            }
            let _ = core.tick(now);
            let (mut m, mut e) = (Vec::new(), Vec::new());
            core.take_output(&mut m, &mut e);
            now += 1_000;
        }
    }
}

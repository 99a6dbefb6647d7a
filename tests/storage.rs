//! A site's storage: checkpoints and rollbacks give the same store whether
//! the checkpoint is a file (disk) or a copy-on-write clone (memory).

use std::path::Path;
use std::sync::Arc;

use dbrep::db::{encode_ops, Op};
use dbrep::log::LogConfig;
use dbrep::storage::Storage;
use dbrep::testing::SimFs;
use dbrep::vfs::Vfs;

fn put(key: &str, value: &str) -> Vec<u8> {
    let mut p = Vec::new();
    encode_ops(
        &[Op::Put {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
        }],
        &mut p,
    );
    p
}

fn backings() -> Vec<(&'static str, Storage)> {
    let cfg = LogConfig {
        segment_size_bytes: 400,
        ..LogConfig::default()
    };
    let vfs: Arc<dyn Vfs> = Arc::new(SimFs::new());
    let (disk, _) = Storage::open(vfs, Path::new("/site"), cfg.clone()).unwrap();
    vec![("disk", disk), ("memory", Storage::in_memory(cfg))]
}

fn entries(s: &Storage) -> Vec<(Vec<u8>, Vec<u8>)> {
    s.store()
        .iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

#[test]
fn rollback_after_checkpoint_restores_the_checkpointed_store() {
    for (name, mut s) in backings() {
        for i in 0..20 {
            s.commit(1, &put(&format!("k{i:02}"), "old")).unwrap();
        }
        let before = entries(&s);
        let ckpt = s.checkpoint().unwrap();
        assert!(
            s.log().base_lsn() > dbrep::Lsn::ZERO,
            "{name}: nothing trimmed"
        );
        // Later commits overwrite checkpointed keys and add new ones: the
        // checkpoint must not see them (a shared, copy-on-write tree).
        for i in 0..30 {
            s.commit(1, &put(&format!("k{:02}", i % 25), "new"))
                .unwrap();
        }
        assert_ne!(entries(&s), before, "{name}");
        let undone = s.rollback_to(ckpt).unwrap();
        assert_eq!(undone.len(), 30, "{name}");
        assert_eq!(entries(&s), before, "{name}: rollback to the checkpoint");
        assert_eq!(s.log().last_lsn(), ckpt, "{name}");

        // Roll back part way: checkpoint plus the records kept after it.
        for i in 0..10 {
            s.commit(1, &put(&format!("k{i:02}"), "third")).unwrap();
        }
        let mid = s.log().last_lsn();
        let at_mid = entries(&s);
        for i in 0..10 {
            s.commit(1, &put(&format!("z{i:02}"), "gone")).unwrap();
        }
        s.rollback_to(mid).unwrap();
        assert_eq!(entries(&s), at_mid, "{name}: rollback past the checkpoint");
    }
}

/// A snapshot from the master replaces everything; a rollback afterwards
/// goes back to the snapshot (the new checkpoint), and a damaged snapshot
/// is refused before anything changes.
#[test]
fn installed_snapshot_is_the_checkpoint_and_damage_changes_nothing() {
    let mut source = Storage::in_memory(LogConfig::default());
    for i in 0..30 {
        source.commit(1, &put(&format!("s{i:02}"), "snap")).unwrap();
    }
    let bytes = source.snapshot_bytes();
    let snap_lsn = source.log().last_lsn();
    for (name, mut s) in backings() {
        for i in 0..5 {
            s.commit(1, &put(&format!("old{i}"), "x")).unwrap();
        }
        let before = entries(&s);
        let last_before = s.log().last_lsn();
        let mut damaged = bytes.clone();
        let mid = damaged.len() / 2;
        damaged[mid] ^= 0x40;
        assert!(s.install_snapshot(&damaged).is_err(), "{name}");
        assert!(
            s.install_snapshot(&bytes[..bytes.len() - 1]).is_err(),
            "{name}"
        );
        assert_eq!(
            entries(&s),
            before,
            "{name}: a refused snapshot changed the store"
        );
        assert_eq!(s.log().last_lsn(), last_before, "{name}");

        s.install_snapshot(&bytes).unwrap();
        assert_eq!(entries(&s), entries(&source), "{name}");
        assert_eq!(s.checkpoint_lsn(), snap_lsn, "{name}");
        for i in 0..10 {
            s.commit(2, &put(&format!("s{i:02}"), "after")).unwrap();
        }
        s.rollback_to(snap_lsn).unwrap();
        assert_eq!(
            entries(&s),
            entries(&source),
            "{name}: rollback to the snapshot"
        );
    }
}

/// Appending a received chain of records in one call gives what appending
/// them one by one gives: the same log, store and count, and the same
/// error at the same record when one's payload is not valid ops, across
/// segment boundaries, on disk and in memory.
#[test]
fn chain_append_matches_one_by_one() {
    use dbrep::log::{encode_record, split_checked, CheckedBatch, RecordType};
    use dbrep::Lsn;

    let small = LogConfig {
        segment_size_bytes: 400,
        ..LogConfig::default()
    };
    let mut master = Storage::in_memory(small.clone());
    let mut lsns = vec![master.append_gen_start(1).unwrap()];
    for i in 0..20 {
        lsns.push(
            master
                .commit(1, &put(&format!("k{i:02}"), "value"))
                .unwrap(),
        );
    }
    let max = small.max_payload();
    // The chain is records skip..20; record 20 follows it on its own.
    for bad in [None, Some(1), Some(6), Some(19)] {
        for skip in [0, 3] {
            // The master's records, the `bad`-th with a payload of the same
            // length (so the LSNs after it still hold) but an unknown op kind.
            let mut blob = Vec::new();
            for (i, &lsn) in lsns.iter().enumerate().take(20).skip(skip) {
                let mut raw = Vec::new();
                master.log().read_raw_into(lsn, &mut raw).unwrap();
                if Some(i) == bad {
                    let rec = dbrep::log::decode_record(&raw, max).unwrap().0;
                    let mut payload = rec.payload.clone();
                    payload[4] = 9;
                    raw.clear();
                    encode_record(
                        rec.lsn,
                        rec.prev_lsn,
                        rec.gen,
                        RecordType::Commit,
                        &payload,
                        &mut raw,
                    );
                }
                blob.extend_from_slice(&raw);
            }
            let setups = backings().into_iter().zip(backings());
            for ((name, mut chained), (_, mut single)) in setups {
                // Both start holding the first `skip` records.
                for &lsn in &lsns[..skip] {
                    let mut raw = Vec::new();
                    master.log().read_raw_into(lsn, &mut raw).unwrap();
                    chained.append_from_master(&raw).unwrap();
                    single.append_from_master(&raw).unwrap();
                }
                let mut one_by_one = 0;
                let mut want_err = None;
                for rec in split_checked(&blob, max) {
                    match single.append_checked_from_master(rec.unwrap()) {
                        Ok(_) => one_by_one += 1,
                        Err(e) => {
                            want_err = Some(e.to_string());
                            break;
                        }
                    }
                }
                let batch = CheckedBatch::check(&blob, max).unwrap();
                let mut recs = batch.iter();
                let first = recs.next().unwrap();
                let mut n = 0;
                let got = chained.append_chain_from_master(first, &mut recs, &mut n);
                let ctx = format!("{name}, bad {bad:?}, skip {skip}");
                assert_eq!(got.err().map(|e| e.to_string()), want_err, "{ctx}");
                assert_eq!(n, one_by_one, "{ctx}");
                assert_eq!(chained.log().last_lsn(), single.log().last_lsn(), "{ctx}");
                assert_eq!(entries(&chained), entries(&single), "{ctx}");
                let read = |s: &Storage| -> Vec<Vec<u8>> {
                    s.log()
                        .iter_from(Lsn::ZERO)
                        .map(|r| r.unwrap().payload)
                        .collect()
                };
                assert_eq!(read(&chained), read(&single), "{ctx}");
                // Both logs take the next record the same way.
                if bad.is_none() {
                    let mut raw = Vec::new();
                    master.log().read_raw_into(lsns[20], &mut raw).unwrap();
                    chained.append_from_master(&raw).unwrap();
                    single.append_from_master(&raw).unwrap();
                    assert_eq!(read(&chained), read(&single), "{ctx}");
                    assert_eq!(entries(&chained), entries(&single), "{ctx}");
                }
            }
        }
    }
}

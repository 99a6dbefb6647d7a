//! Limits of the data calls: each configurable, each a clear error that
//! leaves nothing half done.

mod data_support;

use std::ops::Bound;

use data_support::{config, Group};
use dbrep::{DataLimits, Env, EnvConfig, Error};

fn master_with(limits: DataLimits) -> Env {
    let mut cfg = config(1);
    cfg.data = limits;
    Group::new(1, cfg).sites.remove(0)
}

fn limit_of(e: &Error) -> (&'static str, u64, u64) {
    match e {
        Error::Limit { what, limit, got } => (*what, *limit, *got),
        other => panic!("expected a Limit error, got {other}"),
    }
}

#[test]
fn key_and_value_sizes() {
    let env = master_with(DataLimits {
        max_key_bytes: 4,
        max_value_bytes: 8,
        ..DataLimits::default()
    });
    let db = env.create_database("d").unwrap();
    let mut txn = env.txn();
    let e = txn.put_in(&db, b"12345", b"v").unwrap_err();
    assert_eq!(limit_of(&e), ("key length", 4, 5));
    assert!(
        e.to_string()
            .contains("key length of 5 exceeds the limit of 4"),
        "{e}"
    );
    let e = txn.put_in(&db, b"k", b"123456789").unwrap_err();
    assert_eq!(limit_of(&e), ("value length", 8, 9));
    txn.put_in(&db, b"1234", b"12345678").unwrap();
    txn.commit().unwrap();

    // The plain put returns nothing: its error comes from the commit, and
    // nothing of the transaction is written.
    let mut txn = env.txn();
    txn.put(b"ok", b"v");
    txn.put(b"too long", b"v");
    let e = txn.commit().unwrap_err();
    assert_eq!(limit_of(&e).0, "key length");
    assert_eq!(env.get(b"ok").unwrap(), None);
}

#[test]
fn transaction_size() {
    let env = master_with(DataLimits {
        max_txn_ops: 3,
        max_txn_bytes: 20,
        max_txn_reads: 2,
        ..DataLimits::default()
    });
    let db = dbrep::Database::default();
    let mut txn = env.txn();
    for k in [b"a", b"b", b"c"] {
        txn.put_in(&db, k, b"v").unwrap();
    }
    let e = txn.put_in(&db, b"d", b"v").unwrap_err();
    assert_eq!(limit_of(&e), ("transaction op count", 3, 4));
    txn.commit().unwrap();

    let mut txn = env.txn();
    txn.put_in(&db, b"k", &[0; 15]).unwrap();
    let e = txn.put_in(&db, b"k", &[0; 4]).unwrap_err();
    assert_eq!(limit_of(&e), ("transaction bytes", 20, 21));

    let mut txn = env.txn();
    txn.get(b"a").unwrap();
    txn.range_in(&db, Bound::Unbounded, Bound::Unbounded)
        .unwrap_err();
    txn.get(b"b").unwrap();
    let e = txn.get(b"c").unwrap_err();
    assert_eq!(limit_of(&e).0, "keys and ranges one transaction reads");
}

#[test]
fn database_names() {
    let env = master_with(DataLimits {
        max_name_bytes: 3,
        ..DataLimits::default()
    });
    env.create_database("abc").unwrap();
    let e = env.create_database("abcd").unwrap_err();
    assert_eq!(limit_of(&e), ("database name length", 3, 4));
    assert!(env.list_databases().unwrap() == ["abc"]);
}

#[test]
fn limits_every_site_could_not_replay_are_refused_at_open() {
    let mut cfg: EnvConfig = config(1);
    cfg.data.max_value_bytes = usize::MAX;
    let e = Env::open_in_memory(cfg).err().expect("refused");
    assert!(e.to_string().contains("max_value_bytes"), "{e}");
    let mut cfg: EnvConfig = config(1);
    cfg.data.max_txn_bytes = cfg.log.max_record_bytes as usize;
    let e = Env::open_in_memory(cfg).err().expect("refused");
    assert!(e.to_string().contains("max_txn_bytes"), "{e}");
    Env::open_in_memory(config(1)).expect("the defaults fit");
}

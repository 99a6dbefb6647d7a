//! Named databases: created, opened, listed and removed through the log,
//! on the master and on clients, with keys that never meet.

mod data_support;

use data_support::{config, Group};
use dbrep::db::{decode_snapshot, encode_snapshot, OpLimits, Store};
use dbrep::{Env, Error, Lsn};

fn master() -> Env {
    Group::new(1, config(1)).sites.remove(0)
}

#[test]
fn keys_of_different_databases_never_collide() {
    let env = master();
    let a = env.create_database("a").unwrap();
    let b = env.create_database("b").unwrap();
    let mut txn = env.txn();
    txn.put(b"k", b"default");
    txn.put_in(&a, b"k", b"in a").unwrap();
    txn.put_in(&b, b"k", b"in b").unwrap();
    assert_eq!(txn.get_in(&a, b"k").unwrap(), Some(b"in a".to_vec()));
    txn.commit().unwrap();
    assert_eq!(env.get(b"k").unwrap(), Some(b"default".to_vec()));
    assert_eq!(env.get_in(&a, b"k").unwrap(), Some(b"in a".to_vec()));
    assert_eq!(env.get_in(&b, b"k").unwrap(), Some(b"in b".to_vec()));
    let mut txn = env.txn();
    txn.delete_in(&a, b"k").unwrap();
    txn.commit().unwrap();
    assert_eq!(env.get_in(&a, b"k").unwrap(), None);
    assert_eq!(env.get_in(&b, b"k").unwrap(), Some(b"in b".to_vec()));
    assert_eq!(env.get(b"k").unwrap(), Some(b"default".to_vec()));
    assert_eq!(env.len(), 1, "the default database counts its own keys");
    assert_eq!(env.len_in(&b).unwrap(), 1);
}

#[test]
fn create_open_list_remove() {
    let env = master();
    assert!(env.list_databases().unwrap().is_empty());
    let a = env.create_database("a").unwrap();
    assert!(matches!(env.create_database("a"), Err(Error::Invalid(_))));
    assert!(matches!(env.create_database(""), Err(Error::Invalid(_))));
    env.create_database("b").unwrap();
    assert_eq!(env.list_databases().unwrap(), ["a", "b"]);
    assert_eq!(env.open_database("a").unwrap(), a);
    assert!(matches!(
        env.open_database("zz"),
        Err(Error::NoDatabase(n)) if n == "zz"
    ));
    let mut txn = env.txn();
    txn.put_in(&a, b"k", b"v").unwrap();
    txn.commit().unwrap();

    env.remove_database("a").unwrap();
    assert_eq!(env.list_databases().unwrap(), ["b"]);
    assert!(matches!(env.get_in(&a, b"k"), Err(Error::NoDatabase(_))));
    let mut txn = env.txn();
    txn.put_in(&a, b"k", b"v").unwrap();
    assert!(matches!(txn.commit(), Err(Error::NoDatabase(_))));

    // A new database of the same name is another database: empty, and the
    // old handle does not reach it.
    let a2 = env.create_database("a").unwrap();
    assert_ne!(a2.id(), a.id());
    assert_eq!(env.get_in(&a2, b"k").unwrap(), None);
    assert!(matches!(env.get_in(&a, b"k"), Err(Error::NoDatabase(_))));
    assert_eq!(env.open_or_create_database("c").unwrap().name(), "c");
    assert_eq!(env.open_or_create_database("c").unwrap().name(), "c");
}

#[test]
fn databases_replicate_to_clients() {
    let g = Group::new(2, config(2));
    let (m, c) = (g.site(1), g.site(2));
    let a = m.create_database("a").unwrap();
    let mut txn = m.txn();
    txn.put_in(&a, b"k", b"v").unwrap();
    txn.put(b"k", b"d");
    txn.commit().unwrap();
    g.deliver();
    let ca = c.open_database("a").unwrap();
    assert_eq!(ca.id(), a.id());
    assert_eq!(c.get_in(&ca, b"k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(c.get(b"k").unwrap(), Some(b"d".to_vec()));
    assert!(c.create_database("x").is_err(), "only the master creates");
    m.remove_database("a").unwrap();
    g.deliver();
    assert!(c.list_databases().unwrap().is_empty());
    assert!(matches!(c.get_in(&ca, b"k"), Err(Error::NoDatabase(_))));
    assert_eq!(m.store_digest(), c.store_digest());
}

#[test]
fn databases_survive_checkpoint_and_restart() {
    let dir = std::env::temp_dir().join(format!("dbrep-data-dbs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = config(1);
    cfg.log.in_memory = false;
    {
        let env = Env::open(&dir, cfg.clone()).unwrap();
        env.rep_set_transport(1, |_| Ok(())).unwrap();
        env.rep_start(b"", dbrep::StartAs::Master).unwrap();
        let a = env.create_database("a").unwrap();
        let gone = env.create_database("gone").unwrap();
        let mut txn = env.txn();
        txn.put_in(&a, b"1", b"one").unwrap();
        txn.put_in(&gone, b"1", b"x").unwrap();
        txn.commit().unwrap();
        env.remove_database("gone").unwrap();
        env.checkpoint().unwrap();
        let mut txn = env.txn();
        txn.put_in(&a, b"2", b"two").unwrap();
        txn.commit().unwrap();
        env.log_flush().unwrap();
    }
    let env = Env::open(&dir, cfg).unwrap();
    env.rep_set_transport(1, |_| Ok(())).unwrap();
    env.rep_start(b"", dbrep::StartAs::Master).unwrap();
    let a = env.open_database("a").unwrap();
    assert_eq!(env.get_in(&a, b"1").unwrap(), Some(b"one".to_vec()));
    assert_eq!(env.get_in(&a, b"2").unwrap(), Some(b"two".to_vec()));
    assert_eq!(env.list_databases().unwrap(), ["a"]);
    // Ids are not reused after a restart either.
    let b = env.create_database("b").unwrap();
    assert!(
        b.id() > a.id() + 1,
        "{b:?} reuses the removed database's id"
    );
    drop(env);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn snapshot_round_trips_named_databases_and_keeps_version_1_without() {
    let mut store = Store::new();
    store.put(b"k", b"v");
    let plain = encode_snapshot(&store, Lsn::ZERO, 1);
    assert_eq!(u32::from_le_bytes(plain[8..12].try_into().unwrap()), 1);
    let mut payload = Vec::new();
    dbrep::db::encode_count(&mut payload, 3);
    dbrep::db::DbOpRef::CreateDb { id: 1, name: b"a" }.encode(&mut payload);
    dbrep::db::DbOpRef::Put {
        db: 1,
        key: b"k",
        value: b"in a",
    }
    .encode(&mut payload);
    dbrep::db::DbOpRef::Put {
        db: 7,
        key: b"k",
        value: b"no such database: ignored everywhere",
    }
    .encode(&mut payload);
    store.apply_payload(&payload, &OpLimits::default()).unwrap();
    let bytes = encode_snapshot(&store, Lsn::ZERO, 1);
    let back = decode_snapshot(&bytes, &OpLimits::default()).unwrap();
    assert_eq!(back.store, store);
    assert_eq!(back.store.get_in(1, b"k"), Some(&b"in a"[..]));
    assert_eq!(back.store.digest(), store.digest());
    assert_ne!(store.digest(), {
        let mut s = Store::new();
        s.put(b"k", b"v");
        s.digest()
    });
    // Damage anywhere in the catalog is refused, never a panic.
    for cut in SNAPSHOT_HEADER..bytes.len() {
        let mut b = bytes[..cut].to_vec();
        fix_lengths(&mut b);
        assert!(decode_snapshot(&b, &OpLimits::default()).is_err());
    }
}

const SNAPSHOT_HEADER: usize = dbrep::db::SNAPSHOT_HEADER_LEN;

/// Rewrites a truncated snapshot's body length and CRCs, so that the
/// decoder must find the damage in the body itself.
fn fix_lengths(b: &mut [u8]) {
    let body_len = (b.len() - SNAPSHOT_HEADER) as u64;
    b[32..40].copy_from_slice(&body_len.to_le_bytes());
    let bcrc = crc32fast::hash(&b[SNAPSHOT_HEADER..]);
    b[40..44].copy_from_slice(&bcrc.to_le_bytes());
    let hcrc = crc32fast::hash(&b[0..44]);
    b[44..48].copy_from_slice(&hcrc.to_le_bytes());
}

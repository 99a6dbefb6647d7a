//! Readers on a client are isolated from rollback and snapshot install:
//! a snapshot held across one dies (`HandleDead`) instead of showing
//! writes that were undone; data calls during a sync wait for it or, with
//! no-wait, fail with `Lockout`.

mod data_support;

use std::ops::Bound;

use data_support::{config, Group};
use dbrep::{ConfigFlag, Database, Error, StartAs};

/// Three sites; site 1, master, commits a write (`doomed`) no other site
/// sees, then sites 2 and 3 go on under site 3 as master. Returns the group
/// with site 1 restarted as a client and its first messages waiting: it
/// must roll `doomed` back.
fn group_about_to_roll_back_site_1() -> Group {
    let g = Group::new(3, config(3));
    let db = g.site(1).create_database("d").unwrap();
    let mut txn = g.site(1).txn();
    txn.put_in(&db, b"kept", b"1").unwrap();
    txn.commit().unwrap();
    g.deliver();
    g.cut.lock().unwrap().insert(1);
    let mut txn = g.site(1).txn();
    txn.put_in(&db, b"doomed", b"2").unwrap();
    txn.put(b"doomed", b"2");
    txn.commit().unwrap();
    g.drop_mail();
    // Site 3 followed site 1: appointing it without an election is explicit.
    g.site(3)
        .rep_set_config(ConfigFlag::ManualMaster, true)
        .unwrap();
    g.site(3).rep_start(b"3", StartAs::Master).unwrap();
    g.deliver();
    for i in 0..3u8 {
        let mut txn = g.site(3).txn();
        txn.put(b"new", &[i]);
        txn.commit().unwrap();
    }
    g.deliver();
    g.cut.lock().unwrap().clear();
    g.site(1).rep_start(b"1", StartAs::Client).unwrap();
    g
}

#[test]
fn a_reader_held_across_a_rollback_gets_handle_dead() {
    let g = group_about_to_roll_back_site_1();
    let c = g.site(1);
    let db = c.open_database("d").unwrap();
    let reader = c.read_txn().unwrap();
    let mut cursor = reader.cursor(&db).unwrap();
    assert_eq!(cursor.first().unwrap().unwrap().0, b"doomed");
    let mut scan = c.range(&db, Bound::Unbounded, Bound::Unbounded).unwrap();
    assert_eq!(scan.next().unwrap().unwrap().0, b"doomed");
    assert_eq!(reader.get_in(&db, b"doomed").unwrap(), Some(b"2".to_vec()));

    g.deliver();
    assert_eq!(
        c.get_in(&db, b"doomed").unwrap(),
        None,
        "site 1 rolled back the write no other site had"
    );
    assert!(c.rep_stat(false).txns_rolled_back >= 1);
    assert!(matches!(
        reader.get_in(&db, b"kept"),
        Err(Error::HandleDead)
    ));
    assert!(matches!(cursor.next(), Err(Error::HandleDead)));
    assert!(matches!(cursor.first(), Err(Error::HandleDead)));
    assert!(matches!(scan.next(), Some(Err(Error::HandleDead))));
    assert!(scan.next().is_none(), "a scan ends after its error");

    // A fresh snapshot sees the store as it is now.
    let fresh = c.read_txn().unwrap();
    let keys: Vec<Vec<u8>> = fresh
        .range(&db, Bound::Unbounded, Bound::Unbounded)
        .unwrap()
        .map(|e| e.unwrap().0)
        .collect();
    assert_eq!(keys, [b"kept".to_vec()]);
    assert_eq!(fresh.get(b"doomed").unwrap(), None);
    assert_eq!(fresh.get(b"new").unwrap(), Some(vec![2]));
    assert_eq!(g.site(1).store_digest(), g.site(3).store_digest());
}

#[test]
fn during_a_sync_no_wait_data_calls_fail_with_lockout_and_others_wait() {
    let g = group_about_to_roll_back_site_1();
    let c = g.site(1).clone();
    c.rep_set_config(ConfigFlag::NoWait, true).unwrap();
    let mut locked_out = false;
    while g.deliver_one() {
        match c.read_txn() {
            Err(Error::Lockout) => {
                locked_out = true;
                assert!(matches!(
                    c.get_in(&Database::default(), b"kept"),
                    Err(Error::Lockout)
                ));
                assert!(matches!(c.get(b"kept"), Err(Error::Lockout)));
                assert!(matches!(c.list_databases(), Err(Error::Lockout)));
                // Without no-wait, a reader waits for the sync to end, then
                // reads the rolled-back store, never the state mid-sync.
                c.rep_set_config(ConfigFlag::NoWait, false).unwrap();
                let waiter = {
                    let c = c.clone();
                    std::thread::spawn(move || c.get(b"doomed"))
                };
                g.deliver();
                let got = waiter.join().unwrap().unwrap();
                assert_eq!(got, None, "the waiting read saw the store after the sync");
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(locked_out, "site 1 never synchronised");
    assert_eq!(c.get(b"doomed").unwrap(), None);
}

#[test]
fn a_snapshot_install_kills_readers_too() {
    // A client so far behind that it must be initialised from a snapshot
    // (the master removed the log it lacks): its old snapshot dies. Caught
    // up from the log instead, the snapshot would live on.
    let mut cfg = config(2);
    cfg.log.segment_size_bytes = 4096;
    let g = Group::new(2, cfg);
    let (m, c) = (g.site(1), g.site(2));
    let mut txn = m.txn();
    txn.put(b"first", b"1");
    txn.commit().unwrap();
    g.deliver();
    let reader = c.read_txn().unwrap();
    g.cut.lock().unwrap().insert(2);
    for i in 0..400u32 {
        let mut txn = m.txn();
        txn.put(&i.to_be_bytes(), &[1; 64]);
        txn.commit().unwrap();
    }
    m.checkpoint().unwrap();
    g.cut.lock().unwrap().clear();
    g.drop_mail();
    c.rep_start(b"", StartAs::Client).unwrap();
    g.deliver();
    assert_eq!(c.store_digest(), m.store_digest(), "the client caught up");
    assert!(matches!(reader.get(b"first"), Err(Error::HandleDead)));
}

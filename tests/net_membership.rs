//! Replicated group membership over real TCP on loopback: a group founded
//! by one site grows by sites that name only one member (not necessarily
//! the master) in their peers, the host connects to every member it learns
//! of, and removing a site drops its connections.
#![cfg(feature = "net")]

mod net_support;

use std::net::SocketAddr;

use dbrep::net::Net;
use dbrep::{Env, Error, Role, StartAs};
use net_support::{env_config, init_log, net_config, wait_until};

struct Site {
    eid: i32,
    env: Env,
    net: Net,
}

/// Starts site `eid` with replicated membership on, dialling `peers`.
fn site(root: &std::path::Path, eid: i32, start_as: StartAs, peers: &[SocketAddr]) -> Site {
    site_with(root, eid, start_as, peers, |_| {})
}

/// [`site`], with `prepare` run on the `Env` before its host starts.
fn site_with(
    root: &std::path::Path,
    eid: i32,
    start_as: StartAs,
    peers: &[SocketAddr],
    prepare: impl FnOnce(&Env),
) -> Site {
    let mut ec = env_config(0);
    ec.rep.membership = true;
    let env = Env::open(root.join(format!("site{eid}")), ec).expect("open env");
    prepare(&env);
    let mut nc = net_config(eid, "127.0.0.1:0".parse().unwrap());
    nc.start_as = start_as;
    nc.peers = peers.to_vec();
    let net = Net::new(env.clone(), nc).expect("bind");
    net.start().expect("start");
    Site { eid, env, net }
}

fn members(s: &Site) -> Vec<i32> {
    s.env
        .rep_membership()
        .map(|g| g.members().iter().map(|m| m.eid).collect())
        .unwrap_or_default()
}

fn connected(s: &Site) -> Vec<i32> {
    let mut v: Vec<i32> = s
        .net
        .stats()
        .peers
        .iter()
        .filter(|p| p.connected)
        .map(|p| p.eid)
        .collect();
    v.sort_unstable();
    v
}

/// Founds a group at site 1 and lets sites 2..=n join through site 1.
fn grown(root: &std::path::Path, n: i32) -> Vec<Site> {
    let first = site(root, 1, StartAs::Master, &[]);
    wait_until("site 1 to found a group of itself", || {
        members(&first) == [1]
    });
    let addr1 = first.net.local_addr();
    let mut sites = vec![first];
    for eid in 2..=n {
        sites.push(site(root, eid, StartAs::Client, &[addr1]));
    }
    let want: Vec<i32> = (1..=n).collect();
    wait_until("every site to join", || {
        sites.iter().all(|s| members(s) == want)
    });
    sites
}

fn stop_all(sites: &[Site]) {
    for s in sites {
        s.net.stop().expect("stop");
    }
}

#[test]
fn a_site_that_names_one_client_joins_and_connects_to_every_member() {
    init_log();
    let root = tempfile::tempdir().unwrap();
    let mut sites = grown(root.path(), 3);
    assert_eq!(sites[0].env.role(), Role::Master);
    // Site 4 knows only site 3, a client: it learns the group from it and
    // dials the master by the address the group holds.
    let addr3 = sites[2].net.local_addr();
    sites.push(site(root.path(), 4, StartAs::Client, &[addr3]));
    let want = vec![1, 2, 3, 4];
    wait_until("site 4 to join and every site to see four members", || {
        sites.iter().all(|s| members(s) == want)
    });
    let g = sites[0].env.rep_membership().unwrap();
    for s in &sites {
        assert_eq!(s.env.rep_membership().as_ref(), Some(&g), "site {}", s.eid);
        assert_eq!(s.env.rep_get_nsites(), 4, "site {}", s.eid);
        let addr = g.get(s.eid).unwrap().addr.clone();
        assert_eq!(addr, s.net.local_addr().to_string().into_bytes());
    }
    wait_until("every site to connect to every other", || {
        sites.iter().all(|s| {
            let others: Vec<i32> = want.iter().copied().filter(|&e| e != s.eid).collect();
            connected(s) == others
        })
    });
    let mut txn = sites[0].env.txn();
    txn.put(b"grown", b"four");
    let info = txn.commit().expect("commit on the master");
    assert!(info.permanent, "a majority of four acknowledged");
    wait_until("the commit to reach every site", || {
        sites
            .iter()
            .all(|s| s.env.get(b"grown").unwrap().as_deref() == Some(&b"four"[..]))
    });
    stop_all(&sites);
}

#[test]
// Once flaky under load (issue 18), for two reasons in the host. Site 3
// read the record removing it and the master's close together, and its
// host started an election on the close before the record was processed;
// the election dropped the record, so site 3 believed itself a member and
// redialled. And site 2, not yet holding the removal, reconnected to site 3
// when site 3 dropped it, took the NEWSITE that followed as a reason to
// dial site 3 again after the removal, and kept that connection; or a dial
// still in its handshake when the removal arrived completed and stayed. A
// lost connection now reaches the elector behind the messages read before
// it, and a site that left the group is not dialled again, nor is a dial
// under way to it kept.
fn removing_a_site_drops_its_connections() {
    init_log();
    let root = tempfile::tempdir().unwrap();
    let sites = grown(root.path(), 3);
    wait_until("the group to connect fully", || {
        connected(&sites[0]) == [2, 3] && connected(&sites[2]) == [1, 2]
    });
    wait_until("the master to accept removing site 3", || {
        match sites[0].env.rep_remove_site(3) {
            Ok(_) => true,
            // The last join is not yet held by a majority: try again.
            Err(Error::Unavail(_)) => false,
            Err(e) => panic!("rep_remove_site(3): {e}"),
        }
    });
    wait_until("sites 1 and 2 to see the group without site 3", || {
        members(&sites[0]) == [1, 2] && members(&sites[1]) == [1, 2]
    });
    wait_until("every connection to site 3 to close", || {
        connected(&sites[0]) == [2]
            && connected(&sites[1]) == [1]
            && connected(&sites[2]).is_empty()
    });
    // And it stays so: a commit still becomes permanent with two members.
    let mut txn = sites[0].env.txn();
    txn.put(b"after", b"removal");
    assert!(txn.commit().unwrap().permanent);
    assert_eq!(connected(&sites[0]), [2]);
    stop_all(&sites);
}

#[test]
fn the_host_keeps_an_address_the_application_set() {
    init_log();
    let root = tempfile::tempdir().unwrap();
    const ADDR: &[u8] = b"site-one.example:5551";
    let first = site_with(root.path(), 1, StartAs::Master, &[], |env| {
        env.rep_set_local_addr(ADDR).unwrap();
    });
    wait_until("site 1 to found a group of itself", || {
        members(&first) == [1]
    });
    assert_eq!(first.env.rep_local_addr(), ADDR);
    let g = first.env.rep_membership().unwrap();
    assert_eq!(
        g.get(1).unwrap().addr,
        ADDR,
        "the group holds the application's address"
    );
    // A site that set none advertises the host's listen address, and a
    // host that set it forgets it at stop.
    let second = site(root.path(), 2, StartAs::Client, &[first.net.local_addr()]);
    let listen = second.net.local_addr().to_string().into_bytes();
    assert_eq!(second.env.rep_local_addr(), listen);
    wait_until("site 2 to join", || members(&second) == [1, 2]);
    let g = second.env.rep_membership().unwrap();
    assert_eq!(g.get(2).unwrap().addr, listen);
    assert_eq!(
        g.get(1).unwrap().addr,
        ADDR,
        "replicated as the application set it"
    );
    second.net.stop().unwrap();
    assert!(second.env.rep_local_addr().is_empty());
    first.net.stop().unwrap();
    assert_eq!(
        first.env.rep_local_addr(),
        ADDR,
        "the application's address stays"
    );
}

//! Start and stop: stop closes every socket and joins every thread;
//! starting twice or after stop is an error. (One test in this binary, so
//! counting the process's threads is meaningful.)
#![cfg(feature = "net")]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use dbrep::net::{Net, NetConfig};
use dbrep::{Env, EnvConfig, Role, StartAs};

/// Waits (boundedly) for the host's thread count to become `n`: a thread
/// names itself only once it runs, and leaves the list only once it has exited.
fn host_threads_become(n: usize) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if host_threads() == n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn host_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|t| t.ok())
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .filter(|name| name.starts_with("dbrep-net"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn stop_and_drop_leave_nothing_behind_and_restarting_is_refused() {
    let env = Env::open_in_memory(EnvConfig::default()).unwrap();
    let mut cfg = NetConfig::new(1, "127.0.0.1:0".parse().unwrap());
    cfg.start_as = StartAs::Master;
    let net = Net::new(env.clone(), cfg.clone()).unwrap();
    let addr: SocketAddr = net.local_addr();
    assert!(net.elect().is_err(), "not running yet");
    net.start().unwrap();
    assert!(net.start().is_err(), "started twice");
    assert_eq!(env.role(), Role::Master);
    assert!(host_threads_become(3), "three host threads");
    let mut txn = env.txn();
    txn.put(b"k", b"v");
    assert!(txn.commit().unwrap().permanent);
    let raw = TcpStream::connect(addr).unwrap();

    net.stop().unwrap();
    assert!(host_threads_become(0), "every thread joined");
    assert!(net.start().is_err(), "started after stop");
    net.stop().unwrap();
    // The listener is closed: the port can be bound again, and nothing answers on it.
    drop(raw);
    let rebound = TcpListener::bind(addr).expect("the listener was closed");
    drop(rebound);
    assert!(TcpStream::connect(addr).is_err());

    // Drop stops a running host too.
    cfg.listen = addr;
    let net = Net::new(env.clone(), cfg).unwrap();
    net.start().unwrap();
    assert!(host_threads_become(3), "three host threads");
    drop(net);
    assert!(host_threads_become(0), "every thread joined");
    // The environment is still usable, and only our handle holds it.
    assert_eq!(env.get(b"k").unwrap(), Some(b"v".to_vec()));
}

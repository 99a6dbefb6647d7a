//! Any bytes as a stream of messages to a site in any role: the core never
//! panics, whatever it is fed.
#![no_main]

use dbrep::log::LogConfig;
use dbrep::rep::{Core, RepConfig, StartAs};
use dbrep::storage::Storage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&role, mut rest)) = data.split_first() else {
        return;
    };
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
    match role % 3 {
        0 => {}
        1 => core.start(0, StartAs::Client, b"fuzz").unwrap(),
        _ => {
            core.start(0, StartAs::Master, b"fuzz").unwrap();
            let _ = core.commit(1, &[1, 0, 0, 0, 1, 1, 0, 0, 0, b'k', 1, 0, 0, 0, b'v']);
        }
    }
    let mut now = 10;
    // Each message: from (1 byte), control length (1 byte), rec length (2 bytes), bytes.
    while rest.len() >= 4 {
        let from = i32::from(rest[0] % 4);
        let clen = usize::from(rest[1]).min(rest.len() - 4);
        let rlen = usize::from(u16::from_le_bytes([rest[2], rest[3]])).min(rest.len() - 4 - clen);
        let control = &rest[4..4 + clen];
        let rec = &rest[4 + clen..4 + clen + rlen];
        let _ = core.process(now, control, rec, from);
        let _ = core.tick(now);
        let (mut msgs, mut events) = (Vec::new(), Vec::new());
        core.take_output(&mut msgs, &mut events);
        now += 1_000;
        rest = &rest[4 + clen + rlen..];
    }
});

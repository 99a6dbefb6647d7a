//! Any bytes as (control, rec): decoding never panics, and whatever decodes
//! re-encodes to the same bytes.
//!
//! Inputs whose first byte is even are taken as they are, which fuzzes the
//! control header's own checks. In the others the header's magic, version,
//! reserved bytes and body length are set right, so that the fuzzer's time
//! goes to the bodies: random bytes almost never pass the header's checks.
#![no_main]

use dbrep::wire::{decode, encode, DecodeLimits, CONTROL_LEN, MAGIC, WIRE_VERSION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let framed = data.first().is_some_and(|b| b & 1 == 1);
    let split = data.len().min(CONTROL_LEN);
    let (head, rec) = data.split_at(split);
    let mut control = head.to_vec();
    if framed && control.len() == CONTROL_LEN {
        control[0..2].copy_from_slice(&MAGIC);
        control[2..4].copy_from_slice(&WIRE_VERSION.to_le_bytes());
        control[6] = 0;
        control[7] = 0;
        let len = u32::try_from(rec.len()).unwrap_or(u32::MAX);
        control[24..28].copy_from_slice(&len.to_le_bytes());
    }
    let limits = DecodeLimits {
        max_rec_bytes: 1 << 20,
    };
    if let Ok(env) = decode(&control, rec, &limits) {
        let (mut c, mut r) = (Vec::new(), Vec::new());
        encode(&env, &mut c, &mut r);
        assert_eq!((&c[..], &r[..]), (&control[..], rec));
    }
});

//! Any bytes as (control, rec): decoding never panics, and whatever decodes
//! re-encodes to the same bytes.
#![no_main]

use dbrep::wire::{decode, encode, DecodeLimits, CONTROL_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.len().min(CONTROL_LEN);
    let (control, rec) = data.split_at(split);
    let limits = DecodeLimits {
        max_rec_bytes: 1 << 20,
    };
    if let Ok(env) = decode(control, rec, &limits) {
        let (mut c, mut r) = (Vec::new(), Vec::new());
        encode(&env, &mut c, &mut r);
        assert_eq!((&c[..], &r[..]), (control, rec));
    }
});

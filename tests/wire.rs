//! Wire codec: round trips, robustness against damaged input, and the error
//! each kind of damage produces.

use dbrep::wire::{
    decode, encode, peek_control, DecodeLimits, Envelope, Message, MsgFlags, MsgType,
    VerifyFailReason, CONTROL_LEN, WIRE_VERSION,
};
use dbrep::{Error, Lsn};
use proptest::prelude::*;

fn arb_lsn() -> impl Strategy<Value = Lsn> {
    (any::<u32>(), any::<u32>()).prop_map(|(f, o)| Lsn::new(f, o))
}

fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..64)
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        arb_bytes().prop_map(|cdata| Message::NewClient { cdata }),
        Just(Message::MasterReq),
        arb_lsn().prop_map(|perm_lsn| Message::NewMaster { perm_lsn }),
        (arb_lsn(), arb_bytes()).prop_map(|(perm_lsn, records)| Message::Log { perm_lsn, records }),
        (arb_lsn(), arb_lsn()).prop_map(|(after, upto)| Message::LogReq { after, upto }),
        any::<u32>().prop_map(|priority| Message::Ack { priority }),
        Just(Message::VerifyReq),
        arb_bytes().prop_map(|record| Message::Verify { record }),
        prop_oneof![
            Just(VerifyFailReason::NoRecord),
            Just(VerifyFailReason::Outdated)
        ]
        .prop_map(|reason| Message::VerifyFail { reason }),
        (arb_lsn(), any::<u64>())
            .prop_map(|(ckpt_lsn, offset)| Message::InitReq { ckpt_lsn, offset }),
        (
            arb_lsn(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            arb_bytes()
        )
            .prop_map(|(ckpt_lsn, ckpt_gen, total_len, offset, data)| {
                Message::Snapshot {
                    ckpt_lsn,
                    ckpt_gen,
                    total_len,
                    offset,
                    data,
                }
            }),
        arb_lsn().prop_map(|perm_lsn| Message::Heartbeat { perm_lsn }),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            arb_lsn(),
            any::<u32>(),
            any::<bool>()
        )
            .prop_map(
                |(nsites, nvotes, priority, last_gen, last_lsn, tiebreaker, full)| {
                    Message::Vote1 {
                        nsites,
                        nvotes,
                        priority,
                        last_gen,
                        last_lsn,
                        tiebreaker,
                        full,
                    }
                }
            ),
        Just(Message::Vote2),
        Just(Message::DupMaster),
        any::<u64>().prop_map(|master_time_us| Message::LeaseGrant { master_time_us }),
        any::<u64>().prop_map(|id| Message::ReadIndexReq { id }),
        any::<u64>().prop_map(|id| Message::ReadIndex { id }),
        any::<u64>().prop_map(|master_time_us| Message::LeaseReq { master_time_us }),
        (any::<bool>(), arb_bytes())
            .prop_map(|(electable, addr)| Message::JoinReq { electable, addr }),
        (any::<i32>(), arb_bytes())
            .prop_map(|(master, members)| Message::JoinInfo { master, members }),
        arb_bytes().prop_map(|reason| Message::JoinRefused { reason }),
        Just(Message::LeaveReq),
    ]
}

fn arb_envelope() -> impl Strategy<Value = Envelope> {
    (
        any::<u32>(),
        any::<u32>(),
        arb_lsn(),
        0u8..=MsgFlags::ALL.0,
        arb_message(),
    )
        .prop_map(|(gen, egen, lsn, flags, msg)| Envelope {
            gen,
            egen,
            lsn,
            flags: MsgFlags(flags),
            msg,
        })
}

fn enc(env: &Envelope) -> (Vec<u8>, Vec<u8>) {
    let (mut c, mut r) = (Vec::new(), Vec::new());
    encode(env, &mut c, &mut r);
    (c, r)
}

/// Decoding must never panic; whatever does decode must be canonical.
fn check_canonical(control: &[u8], rec: &[u8]) {
    if let Ok(env) = decode(control, rec, &DecodeLimits::default()) {
        let (c2, r2) = enc(&env);
        assert_eq!(c2, control, "control re-encodes differently");
        assert_eq!(r2, rec, "rec re-encodes differently");
    }
}

/// Applies a mutation to the concatenation of control and rec and splits it
/// back at the header boundary, so both halves get damaged.
fn split(all: &[u8]) -> (&[u8], &[u8]) {
    let cut = all.len().min(CONTROL_LEN);
    all.split_at(cut)
}

proptest! {
    #[test]
    fn round_trip(env in arb_envelope()) {
        let (c, r) = enc(&env);
        prop_assert_eq!(c.len(), CONTROL_LEN);
        prop_assert_eq!(decode(&c, &r, &DecodeLimits::default()).unwrap(), env.clone());
        let (ty, flags, gen, egen, lsn) = peek_control(&c).unwrap();
        prop_assert_eq!(ty, env.msg.msg_type());
        prop_assert_eq!(flags, env.flags);
        prop_assert_eq!(gen, env.gen);
        prop_assert_eq!(egen, env.egen);
        prop_assert_eq!(lsn, env.lsn);
    }

    #[test]
    fn random_bytes_never_panic(control in proptest::collection::vec(any::<u8>(), 0..40),
                                rec in proptest::collection::vec(any::<u8>(), 0..80)) {
        check_canonical(&control, &rec);
        let _ = peek_control(&control);
    }

    #[test]
    fn random_header_random_body(env in arb_envelope(), ty in 0u8..=20,
                                 rec in proptest::collection::vec(any::<u8>(), 0..80)) {
        // A valid header with a random type and a body of random bytes, so
        // the body decoders see plausible lengths rather than only bad magic.
        let (mut c, _) = enc(&env);
        c[4] = ty;
        c[24..28].copy_from_slice(&(rec.len() as u32).to_le_bytes());
        check_canonical(&c, &rec);
    }

    #[test]
    fn bit_flips(env in arb_envelope(), flips in proptest::collection::vec(any::<prop::sample::Index>(), 1..4),
                 bits in proptest::collection::vec(0u8..8, 4)) {
        let (c, r) = enc(&env);
        let mut all = [c, r].concat();
        for (i, at) in flips.iter().enumerate() {
            let at = at.index(all.len());
            all[at] ^= 1 << bits[i];
        }
        let (c, r) = split(&all);
        check_canonical(c, r);
    }

    #[test]
    fn extension(env in arb_envelope(), extra in proptest::collection::vec(any::<u8>(), 1..16)) {
        let (c, mut r) = enc(&env);
        r.extend_from_slice(&extra);
        prop_assert!(decode(&c, &r, &DecodeLimits::default()).is_err());
        // Also with the length field patched to agree: then the body itself
        // must reject the trailing bytes.
        let mut c2 = c.clone();
        c2[24..28].copy_from_slice(&(r.len() as u32).to_le_bytes());
        prop_assert!(decode(&c2, &r, &DecodeLimits::default()).is_err());
        let mut c3 = c;
        c3.extend_from_slice(&extra);
        prop_assert!(decode(&c3, &r, &DecodeLimits::default()).is_err());
    }

    #[test]
    fn truncation_at_every_length(env in arb_envelope()) {
        let (c, r) = enc(&env);
        for n in 0..c.len() {
            prop_assert!(decode(&c[..n], &r, &DecodeLimits::default()).is_err());
            prop_assert!(peek_control(&c[..n]).is_err());
        }
        for n in 0..r.len() {
            prop_assert!(decode(&c, &r[..n], &DecodeLimits::default()).is_err());
            // Patch the length so the body decoder sees the short body.
            let mut c2 = c.clone();
            c2[24..28].copy_from_slice(&(n as u32).to_le_bytes());
            check_canonical(&c2, &r[..n]);
        }
    }
}

fn sample() -> Envelope {
    Envelope {
        gen: 7,
        egen: 8,
        lsn: Lsn::new(2, 100),
        flags: MsgFlags::FROM_MASTER | MsgFlags::PERMANENT,
        msg: Message::Log {
            perm_lsn: Lsn::new(2, 50),
            records: b"some records".to_vec(),
        },
    }
}

fn malformed(r: dbrep::Result<Envelope>) -> String {
    match r {
        Err(Error::Malformed(m)) => m,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn bad_magic() {
    let (mut c, r) = enc(&sample());
    c[0] = 0xAA;
    let m = malformed(decode(&c, &r, &DecodeLimits::default()));
    assert!(m.contains("magic"), "{m}");
}

#[test]
fn wrong_version() {
    let (mut c, r) = enc(&sample());
    c[2..4].copy_from_slice(&9u16.to_le_bytes());
    let m = malformed(decode(&c, &r, &DecodeLimits::default()));
    assert!(m.contains("version 9"), "{m}");
    assert!(m.contains(&format!("version {WIRE_VERSION}")), "{m}");
}

#[test]
fn unknown_type() {
    let (mut c, r) = enc(&sample());
    c[4] = 77;
    let m = malformed(decode(&c, &r, &DecodeLimits::default()));
    assert!(m.contains("unknown message type 77"), "{m}");
    assert!(peek_control(&c).is_err());
    c[4] = 0;
    let m = malformed(decode(&c, &r, &DecodeLimits::default()));
    assert!(m.contains("unknown message type 0"), "{m}");
}

#[test]
fn bad_flags() {
    let (mut c, r) = enc(&sample());
    c[5] |= 0x40;
    let m = malformed(decode(&c, &r, &DecodeLimits::default()));
    assert!(m.contains("flag"), "{m}");
}

#[test]
fn reserved_nonzero() {
    let (mut c, r) = enc(&sample());
    c[7] = 1;
    let m = malformed(decode(&c, &r, &DecodeLimits::default()));
    assert!(m.contains("reserved"), "{m}");
}

#[test]
fn control_wrong_length() {
    let (c, r) = enc(&sample());
    let m = malformed(decode(&c[..27], &r, &DecodeLimits::default()));
    assert!(m.contains("control header: length 27"), "{m}");
}

#[test]
fn length_mismatch() {
    let (c, r) = enc(&sample());
    let m = malformed(decode(&c, &r[..r.len() - 1], &DecodeLimits::default()));
    assert!(m.contains("rec length"), "{m}");
}

#[test]
fn oversized_rec() {
    let (c, r) = enc(&sample());
    let limits = DecodeLimits { max_rec_bytes: 8 };
    match decode(&c, &r, &limits) {
        Err(e @ Error::Limit { .. }) => {
            let m = e.to_string();
            assert!(m.contains("rec length"), "{m}");
            assert!(m.contains("limit of 8"), "{m}");
        }
        other => panic!("expected Limit, got {other:?}"),
    }
    // A header claiming a huge body is refused on the claim alone.
    let mut c2 = c.clone();
    c2[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        decode(&c2, &r, &DecodeLimits::default()),
        Err(Error::Limit { .. })
    ));
}

#[test]
fn trailing_bytes() {
    let (mut c, mut r) = enc(&sample());
    r.push(0);
    c[24..28].copy_from_slice(&(r.len() as u32).to_le_bytes());
    let m = malformed(decode(&c, &r, &DecodeLimits::default()));
    assert!(m.contains("trailing"), "{m}");
    assert!(m.contains("Log body"), "{m}");
}

#[test]
fn bad_bool() {
    let env = Envelope {
        gen: 1,
        egen: 2,
        lsn: Lsn::new(1, 28),
        flags: MsgFlags::default(),
        msg: Message::Vote1 {
            nsites: 3,
            nvotes: 2,
            priority: 100,
            last_gen: 1,
            last_lsn: Lsn::new(1, 28),
            tiebreaker: 5,
            full: true,
        },
    };
    let (c, mut r) = enc(&env);
    assert_eq!(r.len(), 29);
    r[28] = 2;
    let m = malformed(decode(&c, &r, &DecodeLimits::default()));
    assert!(m.contains("bool"), "{m}");
    assert!(m.contains("full"), "{m}");
}

#[test]
fn truncated_body_names_field() {
    let (c, r) = enc(&sample());
    let mut c2 = c.clone();
    c2[24..28].copy_from_slice(&10u32.to_le_bytes());
    let m = malformed(decode(&c2, &r[..10], &DecodeLimits::default()));
    assert!(m.contains("Log body: truncated"), "{m}");
    assert!(m.contains("records"), "{m}");
    assert!(m.contains("at byte 8 of 10"), "{m}");
}

#[test]
fn bad_verify_fail_reason() {
    let env = Envelope {
        gen: 1,
        egen: 1,
        lsn: Lsn::ZERO,
        flags: MsgFlags::default(),
        msg: Message::VerifyFail {
            reason: VerifyFailReason::Outdated,
        },
    };
    let (c, mut r) = enc(&env);
    r[0] = 9;
    let m = malformed(decode(&c, &r, &DecodeLimits::default()));
    assert!(m.contains("unknown reason 9"), "{m}");
}

#[test]
fn byte_string_length_beyond_body() {
    // A length prefix larger than what is left must fail, not allocate.
    let env = Envelope {
        gen: 1,
        egen: 1,
        lsn: Lsn::ZERO,
        flags: MsgFlags::default(),
        msg: Message::NewClient { cdata: vec![1, 2] },
    };
    let (c, mut r) = enc(&env);
    r[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    let m = malformed(decode(&c, &r, &DecodeLimits::default()));
    assert!(m.contains("cdata"), "{m}");
}

#[test]
fn encode_reuses_buffers() {
    let (mut c, mut r) = (Vec::with_capacity(64), Vec::with_capacity(64));
    let (cp, rp) = (c.as_ptr(), r.as_ptr());
    for _ in 0..3 {
        encode(&sample(), &mut c, &mut r);
    }
    assert_eq!(c.as_ptr(), cp);
    assert_eq!(r.as_ptr(), rp);
    assert_eq!(c.len(), CONTROL_LEN);
}

#[test]
fn peek_control_fields() {
    let (c, _) = enc(&sample());
    let (ty, flags, gen, egen, lsn) = peek_control(&c).unwrap();
    assert_eq!(ty, MsgType::Log);
    assert!(flags.contains(MsgFlags::PERMANENT));
    assert_eq!((gen, egen, lsn), (7, 8, Lsn::new(2, 100)));
}

proptest! {
    /// A log body built in place (records first, fixed fields after) is
    /// byte for byte the body `encode` makes, and its header matches too.
    #[test]
    fn log_body_built_in_place_equals_encoded(perm_lsn in arb_lsn(), lsn in arb_lsn(), records in arb_bytes(), gen in any::<u32>()) {
        let env = Envelope {
            gen,
            egen: gen / 2,
            lsn,
            flags: MsgFlags::PERMANENT,
            msg: Message::Log { perm_lsn, records: records.clone() },
        };
        let (mut control, mut rec) = (Vec::new(), Vec::new());
        encode(&env, &mut control, &mut rec);

        let mut body = vec![0xAA; dbrep::wire::LOG_BODY_PREFIX];
        body.extend_from_slice(&records);
        dbrep::wire::finish_log_body(perm_lsn, &mut body);
        prop_assert_eq!(&body, &rec);
        let bare = Envelope { gen, egen: gen / 2, lsn, flags: MsgFlags::PERMANENT, msg: Message::Log { perm_lsn, records: () } };
        prop_assert_eq!(&dbrep::wire::encode_control(&bare, body.len())[..], &control[..]);
    }
}

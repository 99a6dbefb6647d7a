use super::*;

fn payload(ops: &[Op]) -> Vec<u8> {
    let mut v = Vec::new();
    encode_ops(ops, &mut v);
    v
}

#[test]
fn valid_ops_walks_what_was_validated() {
    let ops = vec![
        Op::Put {
            key: b"k1".to_vec(),
            value: b"v1".to_vec(),
        },
        Op::Delete {
            key: b"k2".to_vec(),
        },
        Op::Put {
            key: Vec::new(),
            value: Vec::new(),
        },
    ];
    let p = payload(&ops);
    let v = validate_ops(&p, &OpLimits::default()).unwrap();
    assert_eq!(v.len(), 3);
    let back: Vec<Op> = v
        .iter()
        .filter_map(DbOpRef::key_op)
        .map(OpRef::to_op)
        .collect();
    assert_eq!(back, ops);
    assert_eq!(decode_ops(&p, &OpLimits::default()).unwrap(), ops);
}

#[test]
fn errors_name_field_and_op() {
    let p = payload(&[Op::Put {
        key: b"key".to_vec(),
        value: b"value".to_vec(),
    }]);
    let e = validate_ops(&p[..p.len() - 1], &OpLimits::default()).unwrap_err();
    assert!(e.to_string().contains("value of op 0"), "{e}");
    let e = validate_ops(&p[..10], &OpLimits::default()).unwrap_err();
    assert!(e.to_string().contains("key of op 0"), "{e}");
    let limits = OpLimits {
        max_key_bytes: 2,
        ..OpLimits::default()
    };
    assert!(matches!(
        validate_ops(&p, &limits),
        Err(Error::Limit {
            what: "key length",
            ..
        })
    ));
    let mut called = false;
    assert!(for_each_op(&p[..p.len() - 1], &OpLimits::default(), |_| called = true).is_err());
    assert!(!called);
}

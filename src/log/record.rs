//! The log record format.
//!
//! Every record is a 32-byte header followed by its payload. All integers
//! are little-endian.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | payload length |
//! | 4 | 4 | CRC32 of bytes 8..32+len (everything after the CRC field) |
//! | 8 | 8 | LSN of this record (file u32, then offset u32) |
//! | 16 | 8 | prev LSN: the record before it, `Lsn::ZERO` if none |
//! | 24 | 4 | generation the record was written in |
//! | 28 | 1 | record type ([`RecordType`]) |
//! | 29 | 3 | reserved, zero |
//! | 32 | len | payload |
//!
//! A record names its own LSN so that a reader can tell a real record from
//! stale or shifted bytes, and so that a torn tail can be told apart from
//! damage followed by good data. The replication layer ships records in
//! exactly this encoding and clients append the raw bytes, which keeps a
//! client's log byte-identical to its master's.

use std::sync::OnceLock;

use byteorder::{ByteOrder, LittleEndian};

use crate::error::{Error, Result};
use crate::lsn::Lsn;

/// Length in bytes of a record header.
pub const RECORD_HEADER_LEN: usize = 32;

/// What a record is for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordType {
    /// A committed transaction's changes.
    Commit = 1,
    /// The first record a master writes in a new generation.
    GenStart = 2,
    /// A change of the group membership: the whole new group, encoded as
    /// `crate::membership` describes.
    Membership = 3,
}

impl RecordType {
    /// The type for an on-disk byte, or `None` for an unknown value.
    pub fn from_u8(v: u8) -> Option<RecordType> {
        match v {
            1 => Some(RecordType::Commit),
            2 => Some(RecordType::GenStart),
            3 => Some(RecordType::Membership),
            _ => None,
        }
    }
}

/// A decoded record, payload copied out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Where the record lives.
    pub lsn: Lsn,
    /// The record before it, `Lsn::ZERO` if none.
    pub prev_lsn: Lsn,
    /// Generation it was written in.
    pub gen: u32,
    /// Record type.
    pub rtype: RecordType,
    /// The payload.
    pub payload: Vec<u8>,
}

/// A decoded record header: everything but the payload.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Where the record lives.
    pub lsn: Lsn,
    /// The record before it.
    pub prev_lsn: Lsn,
    /// Generation it was written in.
    pub gen: u32,
    /// Record type.
    pub rtype: RecordType,
    /// Payload length in bytes.
    pub len: u32,
    /// The stored CRC32.
    pub crc: u32,
}

impl RecordHeader {
    /// Length of the whole encoded record, header included.
    pub fn total_len(&self) -> usize {
        RECORD_HEADER_LEN + self.len as usize
    }
}

fn put_lsn(b: &mut [u8], lsn: Lsn) {
    LittleEndian::write_u32(&mut b[0..4], lsn.file);
    LittleEndian::write_u32(&mut b[4..8], lsn.offset);
}

/// CRC32 of `bytes`, as [`crc32fast::hash`] computes it.
///
/// `crc32fast::hash` detects the CPU's features on every call, which costs
/// as much as hashing a few dozen bytes; records are small and hashed on
/// every append and receipt, so the detected hasher is made once and copied.
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    static DETECTED: OnceLock<crc32fast::Hasher> = OnceLock::new();
    let mut h = DETECTED.get_or_init(crc32fast::Hasher::new).clone();
    h.update(bytes);
    h.finalize()
}

/// Appends the encoding of one record to `out`.
#[inline]
pub fn encode_record(
    lsn: Lsn,
    prev_lsn: Lsn,
    gen: u32,
    rtype: RecordType,
    payload: &[u8],
    out: &mut Vec<u8>,
) {
    let start = out.len();
    let mut h = [0u8; RECORD_HEADER_LEN];
    LittleEndian::write_u32(&mut h[0..4], payload.len() as u32);
    put_lsn(&mut h[8..16], lsn);
    put_lsn(&mut h[16..24], prev_lsn);
    LittleEndian::write_u32(&mut h[24..28], gen);
    h[28] = rtype as u8;
    out.reserve(RECORD_HEADER_LEN + payload.len());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    // One pass over the header and payload as they lie in `out` (two
    // passes, header then payload, take the slow path for short inputs twice).
    let crc = crc32(&out[start + 8..]);
    LittleEndian::write_u32(&mut out[start + 4..start + 8], crc);
    debug_assert_eq!(out.len() - start, RECORD_HEADER_LEN + payload.len());
}

/// Decodes a record header without looking at the payload or checking the
/// CRC. Fails if fewer than [`RECORD_HEADER_LEN`] bytes are given, the type
/// is unknown or the reserved bytes are not zero.
pub fn peek_header(bytes: &[u8]) -> Result<RecordHeader> {
    let Some(h) = header_bytes(bytes) else {
        return Err(Error::malformed(format!(
            "log record header truncated: {} of {RECORD_HEADER_LEN} bytes",
            bytes.len()
        )));
    };
    match parse_header(h) {
        Some(hdr) => Ok(hdr),
        None => Err(bad_header(h)),
    }
}

/// The first [`RECORD_HEADER_LEN`] bytes of `bytes`, if there are as many.
#[inline]
fn header_bytes(bytes: &[u8]) -> Option<&[u8; RECORD_HEADER_LEN]> {
    bytes.get(..RECORD_HEADER_LEN)?.try_into().ok()
}

/// The header in `h`, or `None` if its type is unknown or its reserved
/// bytes are not zero. Reads fixed offsets of a fixed-size array, so the
/// hot paths (receiving and appending records) pay no bounds checks.
#[inline]
fn parse_header(h: &[u8; RECORD_HEADER_LEN]) -> Option<RecordHeader> {
    let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let rtype = RecordType::from_u8(h[28])?;
    if h[29] | h[30] | h[31] != 0 {
        return None;
    }
    Some(RecordHeader {
        len: u32_at(0),
        crc: u32_at(4),
        lsn: Lsn::new(u32_at(8), u32_at(12)),
        prev_lsn: Lsn::new(u32_at(16), u32_at(20)),
        gen: u32_at(24),
        rtype,
    })
}

/// What is wrong with a header [`parse_header`] refused.
#[cold]
fn bad_header(h: &[u8; RECORD_HEADER_LEN]) -> Error {
    match RecordType::from_u8(h[28]) {
        None => Error::malformed(format!("unknown log record type {}", h[28])),
        Some(_) => Error::malformed("log record reserved bytes are not zero"),
    }
}

/// Checks that `bytes` starts with one whole record of at most `max_payload`
/// payload bytes whose CRC matches; returns its header.
pub fn check_record(bytes: &[u8], max_payload: u32) -> Result<RecordHeader> {
    let h = peek_header(bytes)?;
    if h.len > max_payload {
        return Err(Error::Limit {
            what: "log record payload",
            limit: max_payload as u64,
            got: h.len as u64,
        });
    }
    let total = h.total_len();
    if bytes.len() < total {
        return Err(Error::malformed(format!(
            "log record at {} truncated: {} of {total} bytes",
            h.lsn,
            bytes.len()
        )));
    }
    let crc = crc32(&bytes[8..total]);
    if crc != h.crc {
        return Err(Error::malformed(format!(
            "log record at {} has a bad checksum (stored {:#010x}, computed {crc:#010x})",
            h.lsn, h.crc
        )));
    }
    Ok(h)
}

/// The length of the whole record at the start of `bytes` if
/// [`check_record`] accepts it, else `None`: the same checks, without
/// building a header or an error, for walking a batch of good records.
#[inline]
fn record_ok(bytes: &[u8], max_payload: u32) -> Option<usize> {
    let h = parse_header(header_bytes(bytes)?)?;
    let total = h.total_len();
    if h.len > max_payload || bytes.len() < total {
        return None;
    }
    (crc32(&bytes[8..total]) == h.crc).then_some(total)
}

/// Decodes the record at the start of `bytes`, checking its CRC, type,
/// reserved bytes and length; returns it and how many bytes it took.
#[cfg(any(test, feature = "testing"))]
pub fn decode_record(bytes: &[u8], max_payload: u32) -> Result<(Record, usize)> {
    let h = check_record(bytes, max_payload)?;
    let total = h.total_len();
    Ok((
        Record {
            lsn: h.lsn,
            prev_lsn: h.prev_lsn,
            gen: h.gen,
            rtype: h.rtype,
            payload: bytes[RECORD_HEADER_LEN..total].to_vec(),
        },
        total,
    ))
}

/// One whole encoded record whose header, length and CRC have been checked.
///
/// Made only by [`CheckedRecord::check`] or [`split_checked`], so a
/// function that takes one (such as [`crate::log::Log::append_checked`])
/// knows the CRC was verified and need not compute it again.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CheckedRecord<'a> {
    header: RecordHeader,
    bytes: &'a [u8],
}

impl<'a> CheckedRecord<'a> {
    /// Checks that `bytes` is exactly one whole record of at most
    /// `max_payload` payload bytes whose CRC matches.
    pub fn check(bytes: &'a [u8], max_payload: u32) -> Result<CheckedRecord<'a>> {
        let header = check_record(bytes, max_payload)?;
        if bytes.len() != header.total_len() {
            return Err(Error::malformed(format!(
                "{} bytes after the log record at {}",
                bytes.len() - header.total_len(),
                header.lsn
            )));
        }
        Ok(CheckedRecord { header, bytes })
    }

    /// The decoded header.
    pub fn header(&self) -> &RecordHeader {
        &self.header
    }

    /// The whole encoded record, header included.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The payload.
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[RECORD_HEADER_LEN..]
    }
}

/// Walks a blob of back-to-back encoded records, checking each once; see
/// [`split_checked`].
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Clone)]
pub struct CheckedIter<'a>(RecordIter<'a>);

#[cfg(any(test, feature = "testing"))]
impl<'a> Iterator for CheckedIter<'a> {
    type Item = Result<CheckedRecord<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(
            self.0
                .next()?
                .map(|(header, bytes)| CheckedRecord { header, bytes }),
        )
    }
}

/// Like [`split_records`], but yields [`CheckedRecord`]s, which can be
/// appended without their CRC being computed again.
#[cfg(any(test, feature = "testing"))]
pub fn split_checked(blob: &[u8], max_payload: u32) -> CheckedIter<'_> {
    CheckedIter(split_records(blob, max_payload))
}

/// Walks a blob of back-to-back encoded records; see [`split_records`].
///
/// Each item is the header and the whole encoded record. After the first
/// error the iterator ends, since nothing after damaged bytes can be trusted.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    rest: &'a [u8],
    max_payload: u32,
    failed: bool,
}

#[cfg(any(test, feature = "testing"))]
impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<(RecordHeader, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        match check_record(self.rest, self.max_payload) {
            Ok(h) => {
                let (rec, rest) = self.rest.split_at(h.total_len());
                self.rest = rest;
                Some(Ok((h, rec)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// A blob of back-to-back records that was checked whole (framing, limits
/// and every CRC) before anything looks at its records: a receiver can
/// refuse a damaged batch before applying any of it, without collecting the
/// records first.
#[derive(Debug, Clone, Copy)]
pub struct CheckedBatch<'a> {
    blob: &'a [u8],
}

impl<'a> CheckedBatch<'a> {
    /// Checks every record of `blob` as [`split_checked`] does; the first
    /// damaged one is the error.
    pub fn check(blob: &'a [u8], max_payload: u32) -> Result<CheckedBatch<'a>> {
        let mut rest = blob;
        while !rest.is_empty() {
            let total = match record_ok(rest, max_payload) {
                Some(total) => total,
                // Damaged: check_record names the problem (the same checks).
                None => check_record(rest, max_payload)?.total_len(),
            };
            rest = rest.get(total..).unwrap_or_default();
        }
        Ok(CheckedBatch { blob })
    }

    /// The records, in order. Only headers are parsed again.
    pub fn iter(&self) -> BatchIter<'a> {
        BatchIter { rest: self.blob }
    }
}

/// The records of a [`CheckedBatch`], in order.
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    rest: &'a [u8],
}

impl<'a> BatchIter<'a> {
    /// True when no record is left.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Takes the next record if it continues a log ending at `last`: it
    /// names `last` as the record before it and has a later LSN (what a
    /// receiver appends right after `last`). Otherwise takes nothing.
    #[inline]
    pub fn next_if_continues(&mut self, last: Lsn) -> Option<CheckedRecord<'a>> {
        let header = parse_header(header_bytes(self.rest)?)?;
        if header.prev_lsn != last || header.lsn <= last {
            return None;
        }
        self.take(header)
    }

    #[inline]
    fn take(&mut self, header: RecordHeader) -> Option<CheckedRecord<'a>> {
        if self.rest.len() < header.total_len() {
            return None;
        }
        let (bytes, tail) = self.rest.split_at(header.total_len());
        self.rest = tail;
        Some(CheckedRecord { header, bytes })
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = CheckedRecord<'a>;

    #[inline]
    fn next(&mut self) -> Option<CheckedRecord<'a>> {
        // Cannot fail on a checked blob; ending quietly keeps it panic-free.
        let header = parse_header(header_bytes(self.rest)?)?;
        self.take(header)
    }
}

/// Iterates over the records in `blob`, each checked as by [`decode_record`].
#[cfg(any(test, feature = "testing"))]
pub fn split_records(blob: &[u8], max_payload: u32) -> RecordIter<'_> {
    RecordIter {
        rest: blob,
        max_payload,
        failed: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rtype() -> impl Strategy<Value = RecordType> {
        prop_oneof![Just(RecordType::Commit), Just(RecordType::GenStart)]
    }

    fn encoded(payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode_record(
            Lsn::new(1, 32),
            Lsn::ZERO,
            1,
            RecordType::Commit,
            payload,
            &mut v,
        );
        v
    }

    #[test]
    fn header_layout() {
        let v = encoded(b"abc");
        assert_eq!(v.len(), 35);
        assert_eq!(&v[0..4], &3u32.to_le_bytes());
        assert_eq!(LittleEndian::read_u32(&v[4..8]), crc32fast::hash(&v[8..]));
        assert_eq!(&v[8..16], &[1, 0, 0, 0, 32, 0, 0, 0]);
        assert_eq!(&v[16..24], &[0; 8]);
        assert_eq!(&v[24..28], &1u32.to_le_bytes());
        assert_eq!(v[28], 1);
        assert_eq!(&v[29..32], &[0, 0, 0]);
        assert_eq!(&v[32..], b"abc");
    }

    #[test]
    fn errors_name_the_problem() {
        let mut v = encoded(b"abc");
        v[28] = 9;
        assert!(peek_header(&v).unwrap_err().to_string().contains("type 9"));
        let mut v = encoded(b"abc");
        v[30] = 1;
        assert!(peek_header(&v)
            .unwrap_err()
            .to_string()
            .contains("reserved"));
        let mut v = encoded(b"abc");
        v[33] ^= 1;
        assert!(decode_record(&v, 100)
            .unwrap_err()
            .to_string()
            .contains("checksum"));
        let v = encoded(b"abc");
        assert!(matches!(decode_record(&v, 2), Err(Error::Limit { .. })));
        assert!(decode_record(&v[..34], 100)
            .unwrap_err()
            .to_string()
            .contains("truncated"));
    }

    #[test]
    fn checked_records() {
        let a = encoded(b"abc");
        let blob = [a.clone(), a.clone()].concat();
        let recs: Vec<_> = split_checked(&blob, 100).map(|r| r.unwrap()).collect();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].bytes(), &a[..]);
        assert_eq!(recs[0].payload(), b"abc");
        assert_eq!(recs[0].header().len, 3);
        assert_eq!(CheckedRecord::check(&a, 100).unwrap(), recs[0]);
        assert!(CheckedRecord::check(&blob, 100)
            .unwrap_err()
            .to_string()
            .contains("bytes after"));
        let mut bad = a.clone();
        bad[33] ^= 1;
        assert!(CheckedRecord::check(&bad, 100).is_err());
        assert!(matches!(
            CheckedRecord::check(&a, 2),
            Err(Error::Limit { .. })
        ));
    }

    proptest! {
        #[test]
        fn round_trip(file in 1u32.., off in 32u32.., pf: u32, po: u32, gen: u32,
                      rt in rtype(), payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut v = vec![7u8; 3];
            encode_record(Lsn::new(file, off), Lsn::new(pf, po), gen, rt, &payload, &mut v);
            let (rec, used) = decode_record(&v[3..], 1000).unwrap();
            prop_assert_eq!(used, v.len() - 3);
            prop_assert_eq!(rec.lsn, Lsn::new(file, off));
            prop_assert_eq!(rec.prev_lsn, Lsn::new(pf, po));
            prop_assert_eq!(rec.gen, gen);
            prop_assert_eq!(rec.rtype, rt);
            prop_assert_eq!(&rec.payload, &payload);
            let h = peek_header(&v[3..]).unwrap();
            prop_assert_eq!(h.len as usize, payload.len());
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = peek_header(&bytes);
            let _ = decode_record(&bytes, 1 << 20);
            for item in split_records(&bytes, 1 << 20) {
                let _ = item;
            }
        }

        #[test]
        fn any_mutation_is_an_error(payload in proptest::collection::vec(any::<u8>(), 0..100),
                                    pos in any::<prop::sample::Index>(), flip in 1u8..) {
            let mut v = encoded(&payload);
            let i = pos.index(v.len());
            v[i] ^= flip;
            // A changed length field makes the CRC cover a different range,
            // which matches the stored CRC only by a 2^-32 accident.
            prop_assert!(decode_record(&v, 1 << 20).is_err());
        }

        #[test]
        fn truncation_is_an_error(payload in proptest::collection::vec(any::<u8>(), 0..100)) {
            let v = encoded(&payload);
            for n in 0..v.len() {
                prop_assert!(decode_record(&v[..n], 1 << 20).is_err());
            }
            let blob = [v.clone(), v.clone()].concat();
            for n in v.len() + 1..blob.len() {
                let items: Vec<_> = split_records(&blob[..n], 1 << 20).collect();
                prop_assert_eq!(items.len(), 2);
                prop_assert!(items[0].is_ok());
                prop_assert!(items[1].is_err());
            }
        }

        #[test]
        fn checked_batch_yields_what_split_checked_does(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..60), 0..6),
            damage in proptest::option::of((any::<prop::sample::Index>(), 1u8..)),
        ) {
            let mut blob = Vec::new();
            for p in &payloads {
                blob.extend_from_slice(&encoded(p));
            }
            if let Some((pos, flip)) = damage {
                if !blob.is_empty() {
                    let i = pos.index(blob.len());
                    blob[i] ^= flip;
                    prop_assert!(CheckedBatch::check(&blob, 1 << 20).is_err());
                    return Ok(());
                }
            }
            let batch = CheckedBatch::check(&blob, 1 << 20).unwrap();
            let want: Vec<_> = split_checked(&blob, 1 << 20).map(|r| r.unwrap()).collect();
            let got: Vec<_> = batch.iter().collect();
            prop_assert_eq!(got, want);
        }
    }
}

//! Segment file naming and the segment header.
//!
//! A segment file is named `log.NNNNNNNNNN` (the file number, 10 digits)
//! and begins with a [`SEGMENT_HEADER_LEN`]-byte header, all little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `b"DBREPLOG"` |
//! | 8 | 4 | format version ([`FORMAT_VERSION`]) |
//! | 12 | 4 | file number (must match the name) |
//! | 16 | 8 | base LSN, packed by `Lsn::to_u64`: the prev LSN of the first record this file holds |
//! | 24 | 4 | base generation: the generation of that base record |
//! | 28 | 4 | first record offset; 0 means [`SEGMENT_HEADER_LEN`] (the usual case) |
//!
//! The last field was reserved in the first draft of the format; it is
//! non-zero only when a client log was reset to continue from a snapshot
//! in the middle of a master's segment, so that its first record lives at
//! the master's offset (keeping LSNs identical) with a hole before it.

use byteorder::{ByteOrder, LittleEndian};

use crate::lsn::Lsn;

/// Length in bytes of a segment header; the usual first record offset.
pub const SEGMENT_HEADER_LEN: usize = 32;

/// Magic bytes opening every segment file.
pub const SEGMENT_MAGIC: &[u8; 8] = b"DBREPLOG";

/// Version of the segment format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The file name of segment `file_no`.
pub fn segment_name(file_no: u32) -> String {
    format!("log.{file_no:010}")
}

/// The file number a segment file name stands for, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("log.")?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A decoded segment header.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The file number.
    pub file_no: u32,
    /// Prev LSN of the first record the file holds.
    pub base_lsn: Lsn,
    /// Generation of the base record.
    pub base_gen: u32,
    /// Offset of the first record.
    pub first_off: u32,
}

impl SegmentHeader {
    /// Appends the encoded header to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut h = [0u8; SEGMENT_HEADER_LEN];
        h[0..8].copy_from_slice(SEGMENT_MAGIC);
        LittleEndian::write_u32(&mut h[8..12], FORMAT_VERSION);
        LittleEndian::write_u32(&mut h[12..16], self.file_no);
        LittleEndian::write_u64(&mut h[16..24], self.base_lsn.to_u64());
        LittleEndian::write_u32(&mut h[24..28], self.base_gen);
        let first = if self.first_off as usize == SEGMENT_HEADER_LEN {
            0
        } else {
            self.first_off
        };
        LittleEndian::write_u32(&mut h[28..32], first);
        out.extend_from_slice(&h);
    }

    /// Decodes a header, or says what is wrong with it.
    pub fn decode(b: &[u8; SEGMENT_HEADER_LEN]) -> Result<SegmentHeader, String> {
        if &b[0..8] != SEGMENT_MAGIC {
            return Err("bad segment magic".into());
        }
        let version = LittleEndian::read_u32(&b[8..12]);
        if version != FORMAT_VERSION {
            return Err(format!("unsupported segment format version {version}"));
        }
        let first = LittleEndian::read_u32(&b[28..32]);
        let first_off = if first == 0 {
            SEGMENT_HEADER_LEN as u32
        } else {
            first
        };
        if (first_off as usize) < SEGMENT_HEADER_LEN {
            return Err(format!("first record offset {first_off} inside the header"));
        }
        Ok(SegmentHeader {
            file_no: LittleEndian::read_u32(&b[12..16]),
            base_lsn: Lsn::from_u64(LittleEndian::read_u64(&b[16..24])),
            base_gen: LittleEndian::read_u32(&b[24..28]),
            first_off,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(segment_name(1), "log.0000000001");
        assert_eq!(parse_segment_name("log.0000000042"), Some(42));
        assert_eq!(parse_segment_name("log.42"), None);
        assert_eq!(parse_segment_name("log.00000000x2"), None);
        assert_eq!(parse_segment_name("log.9999999999"), None);
    }

    #[test]
    fn header_round_trip() {
        let h = SegmentHeader {
            file_no: 3,
            base_lsn: Lsn::new(2, 900),
            base_gen: 7,
            first_off: 32,
        };
        let mut v = Vec::new();
        h.encode(&mut v);
        assert_eq!(&v[28..32], &[0; 4]);
        let arr: [u8; 32] = v.try_into().unwrap();
        assert_eq!(SegmentHeader::decode(&arr).unwrap(), h);
        let mut bad = arr;
        bad[0] = b'X';
        assert!(SegmentHeader::decode(&bad).is_err());
    }
}

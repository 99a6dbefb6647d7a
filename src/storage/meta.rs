//! Replication metadata that must survive a crash: the generation, the
//! election generation and the vote cast in it. A site that forgot its vote
//! could vote twice in one election and elect two masters, so this is made
//! durable before any vote or promotion leaves the site.

use byteorder::{ByteOrder, LittleEndian};

use crate::error::{Error, Result};

/// File name of the metadata inside the environment directory.
pub const META_FILE: &str = "rep.meta";
const MAGIC: &[u8; 8] = b"DBREPMET";
const LEN: usize = 32;
/// The eid a vote names when none was cast: the replication layer's
/// `EID_INVALID` (this layer sits below it, so the value is repeated).
const NO_VOTE: i32 = -2;

/// The durable replication state of one site.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RepMeta {
    /// The highest master generation this site has joined or led.
    pub gen: u32,
    /// The highest election generation this site has taken part in.
    pub egen: u32,
    /// The election generation of the last vote cast (0 = none).
    pub vote_egen: u32,
    /// Whom that vote went to (an `Eid`; `EID_INVALID` when none).
    pub vote_for: i32,
    /// The highest generation this site led as master (0 = never): a site
    /// whose latest generation is one it led may be re-appointed master
    /// without deposing anyone it knows of.
    pub led_gen: u32,
}

impl Default for RepMeta {
    fn default() -> Self {
        RepMeta {
            gen: 0,
            egen: 0,
            vote_egen: 0,
            vote_for: NO_VOTE,
            led_gen: 0,
        }
    }
}

impl RepMeta {
    /// Encodes to the 32-byte file format: magic, gen, egen, vote egen, vote
    /// eid, led generation (zero in files written before it existed), CRC32 of the rest.
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[..8].copy_from_slice(MAGIC);
        LittleEndian::write_u32(&mut b[8..12], self.gen);
        LittleEndian::write_u32(&mut b[12..16], self.egen);
        LittleEndian::write_u32(&mut b[16..20], self.vote_egen);
        LittleEndian::write_i32(&mut b[20..24], self.vote_for);
        LittleEndian::write_u32(&mut b[24..28], self.led_gen);
        let crc = crc32fast::hash(&b[..28]);
        LittleEndian::write_u32(&mut b[28..32], crc);
        b
    }

    /// Decodes the file format, checking magic, length and CRC.
    pub fn decode(b: &[u8]) -> Result<RepMeta> {
        if b.len() != LEN {
            return Err(Error::malformed(format!(
                "replication metadata is {} bytes, expected {LEN}",
                b.len()
            )));
        }
        if &b[..8] != MAGIC {
            return Err(Error::malformed("replication metadata: bad magic"));
        }
        if crc32fast::hash(&b[..28]) != LittleEndian::read_u32(&b[28..32]) {
            return Err(Error::malformed("replication metadata: checksum mismatch"));
        }
        Ok(RepMeta {
            gen: LittleEndian::read_u32(&b[8..12]),
            egen: LittleEndian::read_u32(&b[12..16]),
            vote_egen: LittleEndian::read_u32(&b[16..20]),
            vote_for: LittleEndian::read_i32(&b[20..24]),
            led_gen: LittleEndian::read_u32(&b[24..28]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_vote_is_the_replication_layers_invalid_eid() {
        assert_eq!(NO_VOTE, crate::rep::EID_INVALID);
        let m = RepMeta::default();
        assert_eq!(RepMeta::decode(&m.encode()).unwrap(), m);
    }
}

//! Log sequence numbers.

use std::fmt;

/// A log sequence number: the segment file number and the byte offset of a
/// record inside that file, as in Berkeley DB's `DB_LSN`.
///
/// LSNs order records: a later record has a greater LSN. [`Lsn::ZERO`] means
/// "no record" (segment files are numbered from 1).
///
/// ```
/// use dbrep::Lsn;
/// assert!(Lsn::new(1, 500) < Lsn::new(2, 16));
/// assert!(Lsn::ZERO.is_zero());
/// ```
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn {
    /// Segment file number, from 1.
    pub file: u32,
    /// Byte offset of the record inside its segment file.
    pub offset: u32,
}

impl Lsn {
    /// The null LSN: before every record.
    pub const ZERO: Lsn = Lsn { file: 0, offset: 0 };

    /// Builds an LSN.
    pub const fn new(file: u32, offset: u32) -> Lsn {
        Lsn { file, offset }
    }

    /// True for [`Lsn::ZERO`].
    pub const fn is_zero(self) -> bool {
        self.file == 0 && self.offset == 0
    }

    /// The LSN packed into one integer (file in the high half), for compact encodings.
    pub const fn to_u64(self) -> u64 {
        ((self.file as u64) << 32) | self.offset as u64
    }

    /// The inverse of [`Lsn::to_u64`].
    pub const fn from_u64(v: u64) -> Lsn {
        Lsn {
            file: (v >> 32) as u32,
            offset: v as u32,
        }
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}][{}]", self.file, self.offset)
    }
}

impl fmt::Debug for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

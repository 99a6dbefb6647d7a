//! Replication metadata: the type lives in the storage layer, which makes
//! it durable; it is named here too because the protocol is what needs it.

pub use crate::storage::meta::RepMeta;
#[cfg(any(test, feature = "testing"))]
pub use crate::storage::meta::META_FILE;

//! The replicated key-value store: transaction payloads, the in-memory
//! store, checkpoint snapshots and checkpoint files.
//!
//! How the pieces fit:
//!
//! - A transaction's writes are a list of [`Op`]s. At commit they are
//!   encoded with [`encode_ops`] into the payload of one commit record in
//!   the log, so a transaction is replicated, and replayed, as a unit.
//! - The [`Store`] is an ordered map from byte keys to byte values. It is
//!   changed only by applying a commit payload ([`Store::apply_payload`]),
//!   which validates the whole payload before touching anything, so a
//!   damaged record applies nothing rather than half a transaction.
//! - A checkpoint is the whole store at some log position, encoded as a
//!   snapshot ([`encode_snapshot`]) and written atomically to a file
//!   ([`write_checkpoint`]). The same bytes are what the master streams to
//!   a client too far behind to catch up from the log (internal init).
//! - At open, the store is rebuilt from the checkpoint
//!   ([`read_checkpoint`]) and then by applying, in order, every commit
//!   record in the log after the checkpoint's LSN.
//!
//! Everything read back from disk or received from a peer is checked
//! against [`OpLimits`] before anything is allocated for it.

mod checkpoint;
mod snapshot;
mod store;
mod txn;

pub use checkpoint::{read_checkpoint, write_checkpoint};
pub use snapshot::{decode_snapshot, encode_snapshot};
pub use store::Store;
pub use txn::{
    encode_count, for_each_op, validate_ops, DbId, DbOpRef, OpLimits, OpRef, ValidOps, DEFAULT_DB,
};
// Used by the tests, the fuzzers and the benchmarks (feature `testing`).
#[cfg(any(test, feature = "testing"))]
pub use checkpoint::{read_checkpoint_bytes, CHECKPOINT_FILE, CHECKPOINT_TMP_FILE};
#[cfg(any(test, feature = "testing"))]
pub use snapshot::{Snapshot, SNAPSHOT_HEADER_LEN, SNAPSHOT_MAGIC, SNAPSHOT_VERSION};
#[cfg(any(test, feature = "testing"))]
pub use store::StoreIter;
#[cfg(any(test, feature = "testing"))]
pub use txn::{decode_db_ops, decode_ops, encode_ops, Op, OpIter};

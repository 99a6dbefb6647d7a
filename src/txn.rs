//! [`Txn`]: a transaction on an [`Env`].

use crate::db::Op;
use crate::env::{CommitInfo, Env};
use crate::error::Result;

/// A transaction: buffered puts and deletes applied atomically at commit.
pub struct Txn<'a> {
    env: &'a Env,
    ops: Vec<Op>,
}

impl<'a> Txn<'a> {
    pub(crate) fn new(env: &'a Env) -> Txn<'a> {
        Txn {
            env,
            ops: Vec::new(),
        }
    }

    /// Writes `value` under `key`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.ops.push(Op::Put {
            key: key.to_vec(),
            value: value.to_vec(),
        });
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: &[u8]) {
        self.ops.push(Op::Delete { key: key.to_vec() });
    }

    /// Reads `key` as this transaction would leave it: its own writes first,
    /// then the committed store.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        for op in self.ops.iter().rev() {
            match op {
                Op::Put { key: k, value } if k == key => return Ok(Some(value.clone())),
                Op::Delete { key: k } if k == key => return Ok(None),
                _ => {}
            }
        }
        self.env.get(key)
    }

    /// Commits: writes the commit record, ships it to the clients and waits
    /// (up to the ack timeout) for the acknowledgements the ack policy asks
    /// for. Only the master may commit.
    pub fn commit(self) -> Result<CommitInfo> {
        self.env.commit_ops(&self.ops)
    }

    /// Discards the transaction.
    pub fn abort(self) {}
}

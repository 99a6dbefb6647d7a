//! Opening a log: on disk (through [`super::recovery`]) or in memory.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{recovery, Log, LogConfig, RecoveryReport};
use crate::error::Result;
use crate::lsn::Lsn;
use crate::vfs::Vfs;

impl Log {
    /// Opens (or creates) the log in `dir`; `ckpt_lsn` = LSN of the latest
    /// checkpoint (`Lsn::ZERO` if none): recovery scans records from its
    /// segment on, and an empty log continues from it (with generation
    /// `ckpt_gen`). With `config.in_memory` no file is touched.
    ///
    /// A checkpoint LSN past the end of the recovered log is
    /// [`Error::Corrupt`](crate::Error::Corrupt): the checkpoint would describe records the log
    /// lost, so callers must [`Log::force_sync`] before recording one.
    pub fn open(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        config: LogConfig,
        ckpt_lsn: Lsn,
        ckpt_gen: u32,
    ) -> Result<(Log, RecoveryReport)> {
        if config.in_memory {
            let mut log = Log::in_memory(config);
            log.set_empty(ckpt_lsn, ckpt_gen);
            let report = RecoveryReport {
                cut: None,
                segments: 0,
                last_lsn: ckpt_lsn,
            };
            return Ok((log, report));
        }
        recovery::recover(vfs, dir, config, ckpt_lsn, ckpt_gen)
    }

    /// A log held in memory only, starting at the beginning.
    pub fn in_memory(config: LogConfig) -> Log {
        Log {
            config: LogConfig {
                in_memory: true,
                ..config
            },
            vfs: None,
            dir: PathBuf::new(),
            segs: VecDeque::new(),
            base_lsn: Lsn::ZERO,
            base_gen: 0,
            last_lsn: Lsn::ZERO,
            last_gen: 0,
            tail: Vec::new(),
            written: 0,
            written_lsn: Lsn::ZERO,
            durable_lsn: Lsn::ZERO,
            spare: Vec::new(),
            failed: None,
        }
    }

    pub(super) fn set_empty(&mut self, base: Lsn, base_gen: u32) {
        self.segs.clear();
        self.tail.clear();
        self.written = 0;
        self.base_lsn = base;
        self.base_gen = base_gen;
        self.last_lsn = base;
        self.last_gen = base_gen;
        self.written_lsn = base;
        self.durable_lsn = base;
        self.debug_assert_ends();
    }
}

//! Replication counters (`rep_stat`).

use crate::lsn::Lsn;
use crate::rep::types::{Eid, Role};

/// A snapshot of the replication statistics, named after Berkeley DB's `DB_REP_STAT` fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepStats {
    /// The site's role now (`st_status`); `None` before `rep_start`.
    pub role: Option<Role>,
    /// The current master's id, if known (`st_master`).
    pub master: Option<Eid>,
    /// The current generation (`st_gen`).
    pub gen: u32,
    /// The current election generation (`st_egen`).
    pub egen: u32,
    /// The LSN the next record will have: on a client the next it expects,
    /// on a master the one its next commit takes (`st_next_lsn`); the byte
    /// after the last record, in the last record's segment.
    pub next_lsn: Lsn,
    /// The last record in the local log.
    pub last_lsn: Lsn,
    /// The permanent (commit) point this site knows of.
    pub perm_lsn: Lsn,
    /// LSN of the first record a client is waiting on behind a gap, zero if none (`st_waiting_lsn`).
    pub waiting_lsn: Lsn,
    /// A client has finished its start-up synchronisation (`st_startup_complete`).
    pub startup_complete: bool,
    /// Messages received (`st_msgs_processed`).
    pub msgs_processed: u64,
    /// Messages ignored for carrying an older generation (`st_msgs_badgen`).
    pub msgs_badgen: u64,
    /// Messages that failed to decode.
    pub msgs_malformed: u64,
    /// Messages that arrived before `rep_start` (answered `NotStarted`).
    pub msgs_not_started: u64,
    /// Messages handed to `send` (`st_msgs_sent`).
    pub msgs_sent: u64,
    /// Sends the host reported as failed (`st_msgs_send_failures`).
    pub msgs_send_failures: u64,
    /// Log records received that the client already had (`st_log_duplicated`).
    pub log_duplicated: u64,
    /// Log records buffered because they arrived ahead of a gap (`st_log_queued`).
    pub log_queued: u64,
    /// Log records requested again (`st_log_requested`).
    pub log_requested: u64,
    /// Log records written on a client (`st_log_records`).
    pub log_records: u64,
    /// Answers cut at the `rep_set_limit` bound (`st_nthrottles`).
    pub nthrottles: u64,
    /// Duplicate masters detected (`st_dupmasters`).
    pub dupmasters: u64,
    /// Times this client was initialised from a snapshot because it was too far behind (`st_outdated`).
    pub outdated: u64,
    /// Transactions rolled back to match a master.
    pub txns_rolled_back: u64,
    /// Commits that became permanent (master).
    pub perm_commits: u64,
    /// Commits that did not become permanent within the ack timeout (master).
    pub perm_failed: u64,
    /// Elections this site took part in (`st_elections`).
    pub elections: u64,
    /// Elections this site won (`st_elections_won`).
    pub elections_won: u64,
}

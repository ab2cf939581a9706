//! SQLite: the snapshot journal. A running job's snapshot is appended to a file beside the
//! database (one `write` to the operating system's cache, as durable against a crashed or
//! killed hub as a SQLite commit with `synchronous = NORMAL`) and the report is acknowledged;
//! the writer moves the journal's rows into `job_telemetry_snapshots` with its next commit,
//! at least every 100 ms (`writer::MOVE_EVERY`). A hub started after a crash moves what the
//! journal holds before it serves.
//!
//! Why: at 50,000 running jobs a snapshot is stored ~1,700 times a second. Handed to the
//! writer thread and committed one by one, each cost ~70 us of CPU (two thread wake-ups and a
//! SQLite transaction) and every stored report waited for both; appended here it costs one
//! system call on the report's own task, and the rows reach the table in ten transactions a
//! second, run at the lowest CPU priority.
//!
//! Two files take turns: appends go to one while the rows of the other are being moved, and
//! a file is emptied only after the commit that moved its rows. Each record carries its length
//! and a checksum, so a record torn by a power cut ends the replay instead of corrupting it.

use super::rows::SnapshotRow;
use crate::domain::Point;
use crate::error::{Error, Result};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Text};
use diesel::sqlite::{Sqlite, SqliteConnection};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Snapshots waiting in the journal before reports are refused (the database has not taken a
/// commit for minutes at 50,000 running jobs): UNAVAILABLE, and agents retry.
const MAX_UNMOVED: usize = 1_000_000;
/// Rows per insert statement. A statement that may fail halfway keeps the pages it changed in
/// a statement journal, which SQLite spills to a temporary file beyond 64 KiB: with each row
/// in another page, 15 rows stay under it (with 1,000 rows a statement, every move of
/// 50,000 jobs' snapshots wrote one; the move's CPU stayed about the same either way).
const MOVE_CHUNK: usize = 15;

/// The journal of one SQLite database.
pub struct Journal {
    /// Opened for appending: each `write` lands whole at the end.
    files: [File; 2],
    inner: Mutex<Inner>,
    /// Rows appended and not yet committed to the table (taken or not).
    unmoved: AtomicUsize,
}

struct Inner {
    /// Length of each file after its last whole record.
    lengths: [u64; 2],
    /// The file appends go to.
    current: usize,
    /// Rows appended since the last `take`, in order.
    pending: Vec<SnapshotRow>,
}

/// Rows taken for a commit, and the file that holds them.
pub struct Taken {
    pub rows: Vec<SnapshotRow>,
    file: usize,
}

/// The two files of the journal of the database file `database`.
pub fn paths(database: &str) -> [PathBuf; 2] {
    [0, 1].map(|n| PathBuf::from(format!("{database}-snapshots.{n}")))
}

impl Journal {
    /// Opens (creating) the journal of the database file `database`, and returns with it the
    /// rows a previous run left there, for `move_rows` before the hub serves.
    pub fn open(database: &str) -> Result<(Journal, Vec<SnapshotRow>)> {
        let [first, second] = paths(database);
        let mut left = Vec::new();
        let mut open = |path: PathBuf| -> Result<(File, u64)> {
            let mut file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(&path)
                .map_err(|e| journal_error(&path, e))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)
                .map_err(|e| journal_error(&path, e))?;
            let whole = decode(&bytes, &mut left);
            if whole < bytes.len() {
                // Cut off, or every record appended after it would be unreadable too.
                tracing::warn!(
                    file = %path.display(),
                    bytes = bytes.len() - whole,
                    "snapshot journal ends in a torn record; it is dropped"
                );
                file.set_len(whole as u64)
                    .map_err(|e| journal_error(&path, e))?;
            }
            Ok((file, whole as u64))
        };
        let (a, a_len) = open(first)?;
        let (b, b_len) = open(second)?;
        let journal = Journal {
            files: [a, b],
            inner: Mutex::new(Inner {
                lengths: [a_len, b_len],
                current: 0,
                pending: Vec::new(),
            }),
            unmoved: AtomicUsize::new(0),
        };
        Ok((journal, left))
    }

    /// Empties both files once the rows they held are in the table.
    pub fn clear(&self) -> Result<()> {
        let mut inner = self.lock();
        for n in 0..2 {
            self.files[n]
                .set_len(0)
                .map_err(|e| Error::Unavailable(format!("snapshot journal: {e}")))?;
            inner.lengths[n] = 0;
        }
        Ok(())
    }

    /// Appends a running job's new snapshots; once this returns they survive a crash.
    pub fn append(&self, job_id: &str, points: &[Point]) -> Result<()> {
        let rows: Vec<SnapshotRow> = points.iter().map(|p| SnapshotRow::new(job_id, p)).collect();
        let mut record = Vec::with_capacity(64 * rows.len());
        for row in &rows {
            encode(row, &mut record);
        }
        if self.unmoved.load(Ordering::Relaxed) >= MAX_UNMOVED {
            return Err(Error::Unavailable(
                "the database has not taken snapshots for a while; retry later".into(),
            ));
        }
        let mut inner = self.lock();
        let n = inner.current;
        if let Err(e) = (&self.files[n]).write_all(&record) {
            // A partial record would hide every later one from a replay: cut it off.
            let _ = self.files[n].set_len(inner.lengths[n]);
            return Err(Error::Unavailable(format!("snapshot journal: {e}")));
        }
        inner.lengths[n] += record.len() as u64;
        self.unmoved.fetch_add(rows.len(), Ordering::Relaxed);
        inner.pending.extend(rows);
        Ok(())
    }

    /// True while some appended snapshot is not yet committed to the table.
    pub fn has_unmoved(&self) -> bool {
        self.unmoved.load(Ordering::Acquire) > 0
    }

    /// Takes every pending row for a commit; appends go to the other file from now on.
    pub fn take(&self) -> Option<Taken> {
        let mut inner = self.lock();
        if inner.pending.is_empty() {
            return None;
        }
        let file = inner.current;
        inner.current = 1 - file;
        Some(Taken {
            rows: std::mem::take(&mut inner.pending),
            file,
        })
    }

    /// The taken rows are committed: their file is emptied. Only the writer takes, so until
    /// its next `take` no append goes to that file; it is emptied without holding up appends.
    pub fn moved(&self, taken: Taken) {
        match self.files[taken.file].set_len(0) {
            Ok(()) => self.lock().lengths[taken.file] = 0,
            // Kept: a replay inserts the rows again, which changes nothing.
            Err(e) => tracing::warn!(error = %e, "snapshot journal not emptied"),
        }
        self.unmoved.fetch_sub(taken.rows.len(), Ordering::AcqRel);
    }

    /// The commit failed: the rows go back in front, for the next one.
    pub fn put_back(&self, mut taken: Taken) {
        let mut inner = self.lock();
        taken.rows.append(&mut inner.pending);
        inner.pending = taken.rows;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Inserts journal rows into `job_telemetry_snapshots`, skipping rows already there (a replay
/// after a crash between a commit and the emptying of its file) and rows of jobs no longer
/// running (ended and rolled up in that same window).
pub fn move_rows(conn: &mut SqliteConnection, rows: &[SnapshotRow]) -> QueryResult<()> {
    for chunk in rows.chunks(MOVE_CHUNK) {
        MoveRows(chunk).execute(conn)?;
    }
    Ok(())
}

/// One insert statement of `move_rows`, kept prepared like the writer's statements (see
/// `writer::insert_rows` and `KeptUpdate`). Unlike theirs, its text depends on the number of
/// rows, so it has no static query id and Diesel keys it by its SQL text instead: one prepared
/// statement per chunk length and connection, where `sql_query` was parsed anew for every
/// chunk (a third of the move's CPU).
struct MoveRows<'a>(&'a [SnapshotRow]);

impl diesel::query_builder::QueryId for MoveRows<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::QueryFragment<Sqlite> for MoveRows<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, Sqlite>,
    ) -> QueryResult<()> {
        out.push_sql(
            "INSERT OR IGNORE INTO job_telemetry_snapshots (job_id, sampled_at_ms, sequence, \
             bytes_transferred, transfer_speed_bps, progress_percent, phase) \
             SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7 \
             FROM (VALUES ",
        );
        for (i, row) in self.0.iter().enumerate() {
            out.push_sql(if i == 0 { "(" } else { ", (" });
            out.push_bind_param::<Text, _>(&row.job_id)?;
            for value in [
                &row.sampled_at_ms,
                &row.sequence,
                &row.bytes_transferred,
                &row.transfer_speed_bps,
            ] {
                out.push_sql(", ");
                out.push_bind_param::<BigInt, _>(value)?;
            }
            out.push_sql(", ");
            out.push_bind_param::<Double, _>(&row.progress_percent)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(&row.phase)?;
            out.push_sql(")");
        }
        // Through the index of running jobs, which holds the answer, so the job's own row is
        // not read: at 50,000 running jobs the index is 0.9 MB and the table 6.5 MB, against
        // SQLite's page cache of 2 MB a connection.
        out.push_sql(
            ") AS v WHERE EXISTS (SELECT 1 FROM backup_jobs j INDEXED BY backup_jobs_running \
             WHERE j.job_id = v.column1 AND j.status = 'running')",
        );
        Ok(())
    }
}

impl RunQueryDsl<SqliteConnection> for MoveRows<'_> {}

fn journal_error(path: &std::path::Path, e: std::io::Error) -> Error {
    Error::Unavailable(format!("snapshot journal {}: {e}", path.display()))
}

/// `[payload length: u32][payload][checksum of the payload: u32]`, little-endian; the payload
/// is the row's fields in table order, strings as `[length: u32][UTF-8]`.
fn encode(row: &SnapshotRow, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    put_str(out, &row.job_id);
    out.extend_from_slice(&row.sampled_at_ms.to_le_bytes());
    out.extend_from_slice(&row.sequence.to_le_bytes());
    out.extend_from_slice(&row.bytes_transferred.to_le_bytes());
    out.extend_from_slice(&row.transfer_speed_bps.to_le_bytes());
    out.extend_from_slice(&row.progress_percent.to_le_bytes());
    put_str(out, &row.phase);
    let payload = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&payload.to_le_bytes());
    let sum = checksum(&out[start + 4..]);
    out.extend_from_slice(&sum.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Reads whole records into `rows`; returns how many bytes they took.
fn decode(bytes: &[u8], rows: &mut Vec<SnapshotRow>) -> usize {
    let mut at = 0;
    while let Some((row, used)) = decode_one(&bytes[at..]) {
        rows.push(row);
        at += used;
    }
    at
}

fn decode_one(bytes: &[u8]) -> Option<(SnapshotRow, usize)> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let payload = bytes.get(4..4 + len)?;
    let sum = u32::from_le_bytes(bytes.get(4 + len..8 + len)?.try_into().ok()?);
    if checksum(payload) != sum {
        return None;
    }
    let mut r = Reader(payload);
    let row = SnapshotRow {
        job_id: r.string()?,
        sampled_at_ms: i64::from_le_bytes(r.take()?),
        sequence: i64::from_le_bytes(r.take()?),
        bytes_transferred: i64::from_le_bytes(r.take()?),
        transfer_speed_bps: i64::from_le_bytes(r.take()?),
        progress_percent: f64::from_le_bytes(r.take()?),
        phase: r.string()?,
    };
    r.0.is_empty().then_some((row, 8 + len))
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_at_checked(N)?;
        self.0 = rest;
        head.try_into().ok()
    }

    fn string(&mut self) -> Option<String> {
        let len = u32::from_le_bytes(self.take()?) as usize;
        let (head, rest) = self.0.split_at_checked(len)?;
        self.0 = rest;
        String::from_utf8(head.to_vec()).ok()
    }
}

/// FNV-1a: enough to tell a whole record from a torn or zeroed one.
fn checksum(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(job: &str, sequence: i64) -> SnapshotRow {
        SnapshotRow {
            job_id: job.into(),
            sampled_at_ms: 1_700_000_000_000 + sequence,
            sequence,
            bytes_transferred: sequence * 1000,
            transfer_speed_bps: 16_000_000,
            progress_percent: 12.5,
            phase: "transfer".into(),
        }
    }

    #[test]
    fn records_read_back_and_a_torn_tail_ends_the_replay() {
        let mut bytes = Vec::new();
        encode(&row("a", 1), &mut bytes);
        encode(&row("b", 2), &mut bytes);
        let whole = bytes.len();
        encode(&row("c", 3), &mut bytes);
        bytes.truncate(bytes.len() - 3);
        let mut rows = Vec::new();
        assert_eq!(decode(&bytes, &mut rows), whole);
        let read: Vec<_> = rows
            .iter()
            .map(|r| (r.job_id.as_str(), r.sequence))
            .collect();
        assert_eq!(read, [("a", 1), ("b", 2)]);
        assert_eq!(rows[1].phase, "transfer");
        assert_eq!(rows[1].bytes_transferred, 2000);

        // A zeroed or flipped byte fails the checksum.
        let mut flipped = bytes[..whole].to_vec();
        flipped[10] ^= 1;
        let mut rows = Vec::new();
        assert!(decode(&flipped, &mut rows) < whole);
    }

    fn point(sequence: u64) -> Point {
        row("x", sequence as i64).into_point()
    }

    fn sequences(rows: &[SnapshotRow]) -> Vec<(String, i64)> {
        rows.iter()
            .map(|r| (r.job_id.clone(), r.sequence))
            .collect()
    }

    #[test]
    fn a_reopened_journal_gives_back_every_row_not_yet_moved_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("bw.db").display().to_string();
        let (journal, left) = Journal::open(&database).unwrap();
        assert!(left.is_empty());
        journal.append("a", &[point(1), point(2)]).unwrap();
        let taken = journal.take().unwrap();
        journal.append("b", &[point(3)]).unwrap();
        journal.moved(taken);
        assert!(journal.has_unmoved(), "b is not moved yet");
        // A failed commit puts its rows back in front of later ones.
        let taken = journal.take().unwrap();
        journal.append("c", &[point(4)]).unwrap();
        journal.put_back(taken);
        let taken = journal.take().unwrap();
        assert_eq!(sequences(&taken.rows), [("b".into(), 3), ("c".into(), 4)]);
        journal.put_back(taken);
        journal.append("d", &[point(5)]).unwrap();
        drop(journal);

        // A crash here: what was moved is gone from the files, the rest comes back.
        let (journal, left) = Journal::open(&database).unwrap();
        let mut left = sequences(&left);
        left.sort();
        assert_eq!(left, [("b".into(), 3), ("c".into(), 4), ("d".into(), 5)]);
        journal.clear().unwrap();
        drop(journal);
        let (_journal, left) = Journal::open(&database).unwrap();
        assert!(left.is_empty());
    }

    #[test]
    fn moving_skips_rows_already_stored_and_jobs_no_longer_running() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("bw.db").display().to_string();
        let store = super::super::Store::open(&format!("sqlite://{database}"), 1).unwrap();
        let mut conn = store.connection().unwrap();
        let super::super::Db::Sqlite(c) = &mut *conn else {
            unreachable!("a SQLite store")
        };
        diesel::sql_query(
            "INSERT INTO machines (name, first_seen_at_ms, last_seen_at_ms) VALUES ('vm', 0, 0)",
        )
        .execute(c)
        .unwrap();
        for (job, status) in [("running", "running"), ("ended", "succeeded")] {
            diesel::sql_query(format!(
                "INSERT INTO backup_jobs (job_id, machine, job_type, status, started_at_ms, \
                 bytes_transferred, total_bytes, progress_percent, phase, transfer_speed_bps, \
                 peak_speed_bps, error_message, last_sequence, last_report_at_ms, \
                 last_received_at_ms) \
                 VALUES ('{job}', 'vm', 'full', '{status}', 0, 0, 0, 0, '', 0, 0, '', 1, 0, 0)"
            ))
            .execute(c)
            .unwrap();
        }
        let rows = [row("running", 2), row("ended", 2), row("gone", 2)];
        move_rows(c, &rows).unwrap();
        // A replay after a crash between the commit and the emptying of the file.
        move_rows(c, &rows).unwrap();
        #[derive(QueryableByName)]
        struct Stored {
            #[diesel(sql_type = Text)]
            job_id: String,
        }
        let stored: Vec<Stored> = diesel::sql_query("SELECT job_id FROM job_telemetry_snapshots")
            .load(c)
            .unwrap();
        let stored: Vec<_> = stored.iter().map(|s| s.job_id.as_str()).collect();
        assert_eq!(stored, ["running"]);
    }
}

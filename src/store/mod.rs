//! Persistence: the Diesel schema and rows, a connection pool over SQLite (embedded default) or
//! PostgreSQL chosen by URL scheme, embedded migrations, read queries, the group-commit writer
//! and, on SQLite, the snapshot journal in front of it. Diesel is blocking: every query runs
//! through `Store::run` on the blocking pool, and no connection is ever held across an
//! `.await`.

pub mod journal;
pub mod queries;
pub mod rows;
pub mod schema;
pub mod writer;

use crate::error::{Error, Result};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::time::Duration;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
/// PostgreSQL advisory lock key held while migrating ("bw" in ASCII, then 1).
const MIGRATION_LOCK: i64 = 0x6277_0001;

/// A connection to either engine; queries written once with Diesel's DSL run on both.
#[derive(diesel::MultiConnection)]
pub enum Db {
    Postgresql(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

/// Where the database lives, parsed from `--database-url`.
#[derive(Debug, Clone, PartialEq)]
pub enum DatabaseUrl {
    /// A file path (`sqlite://backwatch.db`, `sqlite:///var/lib/backwatch.db`).
    Sqlite(String),
    /// A libpq URL (`postgres://user@host/db`).
    Postgres(String),
}

impl DatabaseUrl {
    /// Parses the flag value; the scheme picks the engine.
    pub fn parse(url: &str) -> Result<Self> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(Error::invalid(
                    "database-url",
                    "sqlite:// needs a file path",
                ));
            }
            Ok(DatabaseUrl::Sqlite(path.to_string()))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // Fail fast on an unreachable server instead of waiting for the OS TCP timeout.
            let url = if url.contains("connect_timeout=") {
                url.to_string()
            } else if url.contains('?') {
                format!("{url}&connect_timeout=5")
            } else {
                format!("{url}?connect_timeout=5")
            };
            Ok(DatabaseUrl::Postgres(url))
        } else {
            Err(Error::invalid(
                "database-url",
                "must start with sqlite:// or postgres://",
            ))
        }
    }

    /// The URL with any password hidden, for logs.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{path}"),
            DatabaseUrl::Postgres(url) => match (url.find("://"), url.rfind('@')) {
                (Some(s), Some(at)) if at > s => {
                    let userinfo = &url[s + 3..at];
                    match userinfo.split_once(':') {
                        Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                        None => url.clone(),
                    }
                }
                _ => url.clone(),
            },
        }
    }
}

/// Opens connections for the pool, keeping the engine's own error message.
#[derive(Debug, Clone)]
pub struct Connector {
    url: DatabaseUrl,
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectError(String);

impl ManageConnection for Connector {
    type Connection = Db;
    type Error = ConnectError;

    fn connect(&self) -> std::result::Result<Db, ConnectError> {
        match &self.url {
            DatabaseUrl::Sqlite(path) => {
                let mut conn = diesel::SqliteConnection::establish(path)
                    .map_err(|e| ConnectError(e.to_string()))?;
                // WAL keeps readers off the writer's back; NORMAL sync is durable across process
                // crashes (kill -9), which is the contract; the busy timeout absorbs checkpoints.
                // The busy timeout comes first: switching to WAL itself may wait for a lock.
                // No commit checkpoints by itself (that would put the whole copy in the way of
                // the writer and of the reports waiting for it): see `writer::checkpoints`. A
                // log cut back to 64 MiB after a checkpoint lets the disk go once a burst
                // (thousands of jobs created at once) is copied.
                conn.batch_execute(
                    "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                     PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864;",
                )
                .map_err(|e| ConnectError(e.to_string()))?;
                Ok(Db::Sqlite(conn))
            }
            DatabaseUrl::Postgres(url) => diesel::PgConnection::establish(url)
                .map(Db::Postgresql)
                .map_err(|e| ConnectError(e.to_string().trim().to_string())),
        }
    }

    fn is_valid(&self, conn: &mut Db) -> std::result::Result<(), ConnectError> {
        conn.batch_execute("SELECT 1")
            .map_err(|e| ConnectError(e.to_string()))
    }

    fn has_broken(&self, _conn: &mut Db) -> bool {
        false
    }
}

/// SQLite: copies committed pages from the write-ahead log into the database file. Passive
/// runs beside the writer (see `writer::checkpoints`); truncate, at shutdown, copies all and
/// empties the log, so the database file alone holds everything.
#[derive(Debug, Clone, Copy)]
pub enum Checkpoint {
    Passive,
    Truncate,
}

/// What `PRAGMA wal_checkpoint` answers.
#[derive(QueryableByName)]
struct CheckpointDone {
    /// Pages in the log.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    log: i64,
}

impl Checkpoint {
    /// Runs the checkpoint on `conn` and returns the pages in the log (0 on PostgreSQL, where
    /// there is nothing to do).
    pub fn run(self, conn: &mut Db) -> Result<u64> {
        let Db::Sqlite(conn) = conn else {
            return Ok(0);
        };
        let sql = match self {
            Checkpoint::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
            Checkpoint::Truncate => "PRAGMA wal_checkpoint(TRUNCATE)",
        };
        let done: CheckpointDone = diesel::sql_query(sql).get_result(conn)?;
        Ok(u64::try_from(done.log).unwrap_or(0))
    }
}

/// The connection pool and the way to run blocking queries from async code.
#[derive(Clone)]
pub struct Store {
    pool: r2d2::Pool<Connector>,
    url: DatabaseUrl,
}

impl Store {
    /// Connects (failing fast with the engine's message), runs the embedded migrations and builds
    /// the pool.
    pub fn open(url: &str, pool_size: u32) -> Result<Store> {
        let url = DatabaseUrl::parse(url)?;
        let connector = Connector { url: url.clone() };
        let mut first = connector
            .connect()
            .map_err(|e| Error::Unavailable(format!("cannot open {}: {e}", url.redacted())))?;
        migrate(&mut first)?;
        drop(first);
        let pool = r2d2::Pool::builder()
            .max_size(pool_size)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(5))
            // A PostgreSQL server that went away leaves dead connections behind: test each
            // on checkout so the pool replaces them and the hub recovers by itself.
            .test_on_check_out(matches!(url, DatabaseUrl::Postgres(_)))
            .build_unchecked(connector);
        Ok(Store { pool, url })
    }

    /// The database URL with any password hidden.
    pub fn describe(&self) -> String {
        self.url.redacted()
    }

    /// The SQLite database file; none on PostgreSQL.
    pub fn sqlite_path(&self) -> Option<&str> {
        match &self.url {
            DatabaseUrl::Sqlite(path) => Some(path),
            DatabaseUrl::Postgres(_) => None,
        }
    }

    /// True when the store is the embedded SQLite file (one writer at a time).
    pub fn is_sqlite(&self) -> bool {
        matches!(self.url, DatabaseUrl::Sqlite(_))
    }

    /// Checks out a connection for blocking code (the writer thread).
    pub fn connection(&self) -> Result<r2d2::PooledConnection<Connector>> {
        self.pool
            .get()
            .map_err(|e| Error::Unavailable(e.to_string()))
    }

    /// Runs `f` with a pooled connection on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> Result<T> + Send + 'static,
    {
        let store = self.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let mut conn = store.connection()?;
            f(&mut conn)
        })
        .await
        .map_err(|e| Error::Internal(format!("database task failed: {e}")))?
    }

    /// A cheap round trip, for health checks.
    pub async fn ping(&self) -> Result<()> {
        self.run(|conn| conn.batch_execute("SELECT 1").map_err(Error::from))
            .await
    }
}

fn migrate(conn: &mut Db) -> Result<()> {
    let result = match conn {
        Db::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|_| ()),
        // Hubs starting together on one database take turns.
        Db::Postgresql(c) => c
            .batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
            .map_err(Into::into)
            .and_then(|_| c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ()))
            .and_then(|_| {
                c.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
                    .map_err(Into::into)
            }),
    };
    result.map_err(|e| Error::Internal(format!("migrations failed: {e}")))
}

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::Error as D;
        match e {
            D::NotFound => Error::NotFound("not found".into()),
            D::DatabaseError(diesel::result::DatabaseErrorKind::ClosedConnection, info)
            | D::DatabaseError(diesel::result::DatabaseErrorKind::UnableToSendCommand, info) => {
                Error::Unavailable(info.message().to_string())
            }
            D::DatabaseError(_, info) if info.message().contains("database is locked") => {
                Error::Unavailable(info.message().to_string())
            }
            other => Error::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_picks_the_engine_and_passwords_stay_out_of_logs() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://backwatch.db").unwrap(),
            DatabaseUrl::Sqlite("backwatch.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/lib/bw.db").unwrap(),
            DatabaseUrl::Sqlite("/var/lib/bw.db".into())
        );
        assert!(DatabaseUrl::parse("mysql://x").is_err());
        let pg = DatabaseUrl::parse("postgres://bw:secret@db.local:5432/bw").unwrap();
        assert_eq!(
            pg.redacted(),
            "postgres://bw:***@db.local:5432/bw?connect_timeout=5"
        );
    }

    /// A store on a fresh SQLite file (one connection), deleted with the directory.
    pub(crate) fn temporary_sqlite() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        (dir, Store::open(&url, 1).unwrap())
    }

    /// Commits a machine row: one write transaction.
    fn commit_machine(conn: &mut Db, name: &str) {
        conn.batch_execute(&format!(
            "INSERT INTO machines (name, first_seen_at_ms, last_seen_at_ms) VALUES ('{name}', 1, 1)"
        ))
        .unwrap()
    }

    /// The writer's checkpoint passes stop when the log stops growing between two of them, so
    /// the figure a checkpoint returns must be the pages in the log: it grows with commits, a
    /// passive copy leaves it as it is, and truncating empties it. (A commit after a complete
    /// copy starts the log over; the passes allow for that.)
    #[test]
    fn a_checkpoint_returns_the_pages_in_the_log() {
        let (_dir, store) = temporary_sqlite();
        let mut conn = store.connection().unwrap();
        commit_machine(&mut conn, "vm-01");
        commit_machine(&mut conn, "vm-02");
        let two_commits = Checkpoint::Passive.run(&mut conn).unwrap();
        assert_eq!(Checkpoint::Passive.run(&mut conn).unwrap(), two_commits);
        assert_eq!(Checkpoint::Truncate.run(&mut conn).unwrap(), 0);
        commit_machine(&mut conn, "vm-03");
        let one_commit = Checkpoint::Passive.run(&mut conn).unwrap();
        assert!(one_commit > 0, "a commit puts pages in the log");
        assert!(
            two_commits > one_commit,
            "{two_commits} pages after two commits, {one_commit} after one"
        );
    }
}

//! The database the benchmark's hub runs on: a fresh SQLite file in the temporary directory, or
//! a fresh PostgreSQL database `backwatch_bench_<pid>` created and dropped with the machine's
//! `psql` (the agent crate has no PostgreSQL client of its own).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::db_size::DbSize;
use super::BenchError;

/// The benchmark's database; a PostgreSQL one is dropped on drop (unless kept).
pub enum BenchDatabase {
    Sqlite(PathBuf),
    Postgres {
        /// The URL given, used for CREATE and DROP DATABASE.
        admin: String,
        /// The same server, database `name`.
        url: String,
        name: String,
        keep: bool,
    },
}

impl BenchDatabase {
    /// `None`: a SQLite file in `dir`. `postgres://…`: creates `backwatch_bench_<pid>` there.
    pub fn create(url: Option<&str>, dir: &Path, keep: bool) -> Result<BenchDatabase, BenchError> {
        let Some(admin) = url else {
            return Ok(BenchDatabase::Sqlite(dir.join("bench.db")));
        };
        if let Some(path) = admin.strip_prefix("sqlite://") {
            return Ok(BenchDatabase::Sqlite(PathBuf::from(path)));
        }
        if !(admin.starts_with("postgres://") || admin.starts_with("postgresql://")) {
            return Err(BenchError::Database(format!(
                "--database-url must be postgres://… or sqlite://…, not {admin}"
            )));
        }
        let name = format!("backwatch_bench_{}", std::process::id());
        let url = with_database(admin, &name)
            .ok_or_else(|| BenchError::Database(format!("cannot read a host out of {admin}")))?;
        psql_sync(
            admin,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )?;
        psql_sync(admin, &format!("CREATE DATABASE {name}"))?;
        Ok(BenchDatabase::Postgres {
            admin: admin.to_string(),
            url,
            name,
            keep,
        })
    }

    pub fn engine(&self) -> &'static str {
        match self {
            BenchDatabase::Sqlite(_) => "SQLite",
            BenchDatabase::Postgres { .. } => "PostgreSQL",
        }
    }

    /// Where the data is, for the header line.
    pub fn describe(&self) -> String {
        match self {
            BenchDatabase::Sqlite(path) => path.display().to_string(),
            BenchDatabase::Postgres { url, .. } => url.clone(),
        }
    }

    /// The hub's `--database-url`.
    pub fn hub_url(&self) -> String {
        match self {
            BenchDatabase::Sqlite(path) => format!("sqlite://{}", path.display()),
            BenchDatabase::Postgres { url, .. } => url.clone(),
        }
    }

    pub fn postgres_url(&self) -> Option<&str> {
        match self {
            BenchDatabase::Sqlite(_) => None,
            BenchDatabase::Postgres { url, .. } => Some(url),
        }
    }

    /// SQLite: from its files (after a clean hub shutdown). PostgreSQL: `pg_database_size`, as
    /// both `file` and `used`.
    pub async fn size(&self) -> Result<DbSize, BenchError> {
        match self {
            BenchDatabase::Sqlite(path) => Ok(DbSize::read(path)?),
            BenchDatabase::Postgres { url, .. } => {
                let out = psql(url, "SELECT pg_database_size(current_database())").await?;
                let bytes = parse(&out)? as u64;
                Ok(DbSize {
                    file: bytes,
                    used: bytes,
                    wal: 0,
                })
            }
        }
    }

    /// PostgreSQL: the average stored size of the finished `backup_jobs` rows whose id starts
    /// with `prefix` (`pg_column_size` of the whole row, its compressed record included).
    /// SQLite: `None` (measured from the file instead).
    pub async fn finished_row_bytes(&self, prefix: &str) -> Result<Option<f64>, BenchError> {
        let BenchDatabase::Postgres { url, .. } = self else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT coalesce(avg(pg_column_size(t.*)), 0) FROM backup_jobs t \
             WHERE status <> 'running' AND job_id LIKE '{}%'",
            prefix.replace('\'', "''")
        );
        Ok(Some(parse(&psql(url, &sql).await?)?))
    }

    /// How phase 5 is measured on this engine, printed under the table.
    pub fn size_note(&self) -> &'static str {
        match self {
            BenchDatabase::Sqlite(_) => {
                "storage (SQLite): pages in use after minus before writing the finished jobs, read \
                 from the database header and WAL after a clean hub shutdown, per job; growth is \
                 the file size difference per 1,000 jobs."
            }
            BenchDatabase::Postgres { .. } => {
                "storage (PostgreSQL): average pg_column_size of the finished jobs' backup_jobs \
                 rows (record included, compressed as stored; index entries not counted); growth \
                 is the pg_database_size difference per 1,000 jobs, which includes indexes and \
                 the dead tuples of rolled-up snapshots until autovacuum reclaims them."
            }
        }
    }
}

impl Drop for BenchDatabase {
    fn drop(&mut self) {
        if let BenchDatabase::Postgres {
            admin, name, keep, ..
        } = self
        {
            if *keep {
                return;
            }
            match psql_sync(
                admin,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            ) {
                Ok(_) => println!("dropped PostgreSQL database {name}"),
                Err(e) => println!("could not drop PostgreSQL database {name}: {e}"),
            }
        }
    }
}

/// `url` with its database (path) replaced by `name`, query kept.
pub fn with_database(url: &str, name: &str) -> Option<String> {
    let scheme_end = url.find("://")? + 3;
    let rest = &url[scheme_end..];
    let (before_query, query) = match rest.find('?') {
        Some(q) => (&rest[..q], &rest[q..]),
        None => (rest, ""),
    };
    let authority = before_query.split('/').next()?;
    if authority.is_empty() {
        return None;
    }
    Some(format!("{}{authority}/{name}{query}", &url[..scheme_end]))
}

fn psql_args(url: &str, sql: &str) -> Vec<String> {
    ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-Atc", sql, url]
        .map(String::from)
        .to_vec()
}

fn psql_result(url: &str, sql: &str, out: std::process::Output) -> Result<String, BenchError> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(BenchError::Database(format!(
            "psql {url} -c {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn psql_error(e: std::io::Error) -> BenchError {
    BenchError::Database(format!("cannot run psql (needed for PostgreSQL): {e}"))
}

fn psql_sync(url: &str, sql: &str) -> Result<String, BenchError> {
    let out = std::process::Command::new("psql")
        .args(psql_args(url, sql))
        .stdin(Stdio::null())
        .output()
        .map_err(psql_error)?;
    psql_result(url, sql, out)
}

async fn psql(url: &str, sql: &str) -> Result<String, BenchError> {
    let out = tokio::process::Command::new("psql")
        .args(psql_args(url, sql))
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(psql_error)?;
    psql_result(url, sql, out)
}

fn parse(out: &str) -> Result<f64, BenchError> {
    out.parse()
        .map_err(|_| BenchError::Database(format!("psql answered {out:?}, not a number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_and_keeps_the_rest() {
        let to = |u| with_database(u, "bw_bench_1");
        assert_eq!(
            to("postgres://postgres@127.0.0.1:5432/test").as_deref(),
            Some("postgres://postgres@127.0.0.1:5432/bw_bench_1")
        );
        assert_eq!(
            to("postgresql://u:p@h/db?sslmode=disable").as_deref(),
            Some("postgresql://u:p@h/bw_bench_1?sslmode=disable")
        );
        assert_eq!(
            to("postgres://h:5432").as_deref(),
            Some("postgres://h:5432/bw_bench_1")
        );
        assert_eq!(to("postgres:///db"), None);
    }
}

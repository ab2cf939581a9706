//! Test harness: `spawn_hub()` starts a hub in-process on a fresh database; report builders.

use backwatch::config::ServeConfig;
use backwatch::proto::telemetry_service_client::TelemetryServiceClient;
use backwatch::proto::{self, JobStatus, JobType};
use diesel::{Connection, RunQueryDsl};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub type Client = TelemetryServiceClient<Channel>;

/// A hub running in this process; dropped or stopped, it shuts down cleanly.
pub struct TestHub {
    pub addr: SocketAddr,
    pub config: ServeConfig,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<backwatch::error::Result<()>>>,
    _database: Option<TestDatabase>,
    _dir: tempfile::TempDir,
}

/// A database for one test: a new SQLite file, or a new PostgreSQL database when
/// TEST_DATABASE_URL is set (dropped again at the end of the test).
pub struct TestDatabase {
    pub url: String,
    postgres: Option<(String, String)>,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.postgres {
            if let Ok(mut conn) = diesel::PgConnection::establish(admin) {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn);
            }
        }
    }
}

pub fn fresh_database(dir: &tempfile::TempDir) -> TestDatabase {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(base) if base.starts_with("postgres") => {
            let name = format!("backwatch_test_{}_{}", std::process::id(), unique());
            let mut admin =
                diesel::PgConnection::establish(&base).expect("TEST_DATABASE_URL reachable");
            diesel::sql_query(format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .expect("create test database");
            let (prefix, _) = base.rsplit_once('/').expect("database url with a path");
            TestDatabase {
                url: format!("{prefix}/{name}"),
                postgres: Some((base.clone(), name)),
            }
        }
        _ => TestDatabase {
            url: format!("sqlite://{}", dir.path().join("hub.db").display()),
            postgres: None,
        },
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) * 1_000_000
        + (SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_micros() as u64)
}

pub async fn spawn_hub() -> TestHub {
    spawn_hub_with(|_| {}).await
}

/// Another hub on an existing database (several hubs sharing one PostgreSQL).
pub async fn spawn_hub_on(database_url: &str, adjust: impl FnOnce(&mut ServeConfig)) -> TestHub {
    start_hub(database_url, None, adjust).await
}

pub async fn spawn_hub_with(adjust: impl FnOnce(&mut ServeConfig)) -> TestHub {
    let dir = tempfile::tempdir().unwrap();
    let database = fresh_database(&dir);
    start_hub(&database.url.clone(), Some((database, dir)), adjust).await
}

async fn start_hub(
    database_url: &str,
    owned: Option<(TestDatabase, tempfile::TempDir)>,
    adjust: impl FnOnce(&mut ServeConfig),
) -> TestHub {
    let (database, dir) = match owned {
        Some((db, dir)) => (Some(db), dir),
        None => (None, tempfile::tempdir().unwrap()),
    };
    let mut config = ServeConfig::for_database(database_url);
    config.ui_dir = Some(dir.path().join("no-ui"));
    adjust(&mut config);
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut hub = TestHub {
        addr,
        config,
        stop: None,
        task: None,
        _database: database,
        _dir: dir,
    };
    hub.start(listener);
    hub
}

impl TestHub {
    fn start(&mut self, listener: tokio::net::TcpListener) {
        let (tx, rx) = oneshot::channel::<()>();
        let config = self.config.clone();
        self.stop = Some(tx);
        self.task = Some(tokio::spawn(async move {
            let stopped = backwatch::server::run(listener, config, async {
                let _ = rx.await;
            })
            .await;
            if let Err(e) = &stopped {
                eprintln!("test hub stopped with an error: {e}");
            }
            stopped
        }));
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn client(&self) -> Client {
        for _ in 0..100 {
            if let Ok(c) = TelemetryServiceClient::connect(self.url()).await {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("hub at {} never accepted a connection", self.url());
    }

    /// Stops the hub (graceful), keeping its database.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// Starts it again on the same address and database.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.start(listener);
    }

    /// A direct database connection, to check what is stored. On SQLite it first waits until
    /// the hub has moved its snapshot journal into the table (within a second or two).
    pub fn database(&self) -> backwatch::store::Store {
        let store = backwatch::store::Store::open(&self.config.database_url, 1).unwrap();
        if let Some(path) = store.sqlite_path() {
            let journal_empty = || {
                backwatch::store::journal::paths(path)
                    .iter()
                    .all(|file| std::fs::metadata(file).map_or(true, |m| m.len() == 0))
            };
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !journal_empty() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the snapshot journal was not moved into the table"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        store
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub fn ts(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// A job's first report.
pub fn first(job_id: &str, machine: &str) -> proto::ReportProgressRequest {
    proto::ReportProgressRequest {
        job_id: job_id.into(),
        sequence: 1,
        status: JobStatus::Running as i32,
        phase: "snapshot".into(),
        machine: machine.into(),
        job_type: JobType::Full as i32,
        total_bytes: 10_000_000_000,
        machine_info: Some(proto::MachineInfo {
            cpu_cores: 2,
            memory_bytes: 8_000_000_000,
            disk_count: 2,
            os: "Debian 12".into(),
        }),
        ..Default::default()
    }
}

/// A running report at `sampled_at`.
pub fn running(
    job_id: &str,
    sequence: u64,
    sampled_at: i64,
    bytes: u64,
    speed: u64,
) -> proto::ReportProgressRequest {
    proto::ReportProgressRequest {
        job_id: job_id.into(),
        sequence,
        sampled_at: Some(ts(sampled_at)),
        status: JobStatus::Running as i32,
        phase: "transfer".into(),
        bytes_transferred: bytes,
        total_bytes: 10_000_000_000,
        progress_percent: (bytes as f64 / 100_000_000.0).min(100.0),
        transfer_speed_bps: speed,
        ..Default::default()
    }
}

/// The terminal report.
pub fn ended(
    job_id: &str,
    sequence: u64,
    sampled_at: i64,
    bytes: u64,
    status: JobStatus,
) -> proto::ReportProgressRequest {
    proto::ReportProgressRequest {
        job_id: job_id.into(),
        sequence,
        sampled_at: Some(ts(sampled_at)),
        status: status as i32,
        phase: "done".into(),
        bytes_transferred: bytes,
        total_bytes: 10_000_000_000,
        progress_percent: 100.0,
        error_message: if status == JobStatus::Failed {
            "disk 2: read error".into()
        } else {
            String::new()
        },
        ..Default::default()
    }
}

/// Runs a whole job on the agent's clock: first report at `start`, a report every 3 s with a
/// steady 100 MB/s, ending with `status` after `seconds`.
pub async fn run_job(
    client: &mut Client,
    job_id: &str,
    machine: &str,
    start: i64,
    seconds: i64,
    status: JobStatus,
) {
    let mut r = first(job_id, machine);
    r.sampled_at = Some(ts(start));
    client.report_progress(r).await.unwrap();
    let mut seq = 1;
    let mut t = 3;
    while t < seconds {
        seq += 1;
        client
            .report_progress(running(
                job_id,
                seq,
                start + t * 1000,
                t as u64 * 100_000_000,
                100_000_000,
            ))
            .await
            .unwrap();
        t += 3;
    }
    client
        .report_progress(ended(
            job_id,
            seq + 1,
            start + seconds * 1000,
            seconds as u64 * 100_000_000,
            status,
        ))
        .await
        .unwrap();
}

/// Polls `check` until it returns Some or `limit` passes.
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The code and message of a failed call.
pub fn failure<T: std::fmt::Debug>(
    r: Result<tonic::Response<T>, tonic::Status>,
) -> (tonic::Code, String) {
    let s = r.expect_err("the call should fail");
    (s.code(), s.message().to_string())
}

/// Raw snapshot rows of a job.
pub fn stored_snapshots(hub: &TestHub, job_id: &str) -> i64 {
    use backwatch::store::schema::job_telemetry_snapshots::dsl;
    use diesel::prelude::*;
    let store = hub.database();
    let mut conn = store.connection().unwrap();
    dsl::job_telemetry_snapshots
        .filter(dsl::job_id.eq(job_id))
        .count()
        .get_result(&mut *conn)
        .unwrap()
}

/// Splits a complete HTTP/1.1 response into its head and de-chunked body.
pub fn parse_http(raw: &[u8]) -> (String, Vec<u8>) {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("http head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut rest = &raw[split + 4..];
    if !head.to_lowercase().contains("transfer-encoding: chunked") {
        return (head, rest.to_vec());
    }
    let mut body = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return (head, body);
        }
        body.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
        rest = &rest[eol + 4 + size..];
    }
}

/// One grpc-web data frame around `payload`.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// grpc-web frames: (is_trailer, payload).
pub fn frames(mut body: &[u8]) -> Vec<(bool, Vec<u8>)> {
    let mut out = Vec::new();
    while body.len() >= 5 {
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        out.push((body[0] & 0x80 != 0, body[5..5 + len].to_vec()));
        body = &body[5 + len..];
    }
    out
}

/// Waits (at most `limit`) until the job is abandoned; returns its history then.
pub async fn once_abandoned(
    c: &Client,
    job_id: &str,
    limit: Duration,
) -> proto::GetHistoryResponse {
    eventually(limit, || {
        let mut c = c.clone();
        let job_id = job_id.to_string();
        async move {
            let h = c
                .get_history(proto::GetHistoryRequest { job_id })
                .await
                .ok()?
                .into_inner();
            (h.job.as_ref()?.status == JobStatus::Abandoned as i32).then_some(h)
        }
    })
    .await
}

//! Durability: SIGKILL the hub process right after acknowledgements, restart it on the same
//! file, and find every acknowledged creation, snapshot and terminal report.

use crate::common::*;
use backwatch::proto::telemetry_service_client::TelemetryServiceClient;
use backwatch::proto::{GetHistoryRequest, JobStatus};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The hub as a child process; killed when dropped.
struct HubProcess {
    child: tokio::process::Child,
    url: String,
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn start_process(database_url: &str) -> HubProcess {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_backwatch"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            database_url,
        ])
        .env("BACKWATCH_UI_DIR", "/nonexistent")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("starting the backwatch binary");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(at) = line.find("listening on http://") {
                let rest = &line[at + "listening on ".len()..];
                return rest.split_whitespace().next().unwrap().to_string();
            }
        }
        panic!("the hub exited before listening");
    })
    .await
    .expect("the hub logs where it listens");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    HubProcess { child, url }
}

/// What an agent saw acknowledged.
#[derive(Default, Clone)]
struct Acked {
    last_sequence: u64,
    reports: u64,
    ended: Option<JobStatus>,
}

/// A hub on transparent huge pages stalls a worker or the writer for the zeroing of 2 MiB each
/// time its heap grows (see `no_transparent_huge_pages` in `main.rs`).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_hub_process_runs_without_transparent_huge_pages() {
    let dir = tempfile::tempdir().unwrap();
    let database = fresh_database(&dir);
    let hub = start_process(&database.url).await;
    let pid = hub.child.id().expect("the hub is running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) else {
        return; // a kernel older than 5.0 does not say
    };
    assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
}

#[tokio::test]
async fn kill_minus_nine_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let database = fresh_database(&dir);
    let db = database.url.clone();
    let mut hub = start_process(&db).await;
    let acked: Arc<Mutex<Vec<(String, Acked)>>> = Arc::default();
    let t0 = now_ms() - 3_600_000;
    let mut agents = Vec::new();
    for a in 0..8 {
        let (url, acked) = (hub.url.clone(), acked.clone());
        agents.push(tokio::spawn(async move {
            let mut c = TelemetryServiceClient::connect(url).await.unwrap();
            for j in 0.. {
                let id = format!("crash-{a}-{j}");
                let slot = {
                    let mut all = acked.lock().unwrap();
                    all.push((id.clone(), Acked::default()));
                    all.len() - 1
                };
                let mut r = first(&id, &format!("vm-{a}"));
                r.sampled_at = Some(ts(t0));
                if c.report_progress(r).await.is_err() {
                    return;
                }
                acked.lock().unwrap()[slot].1 = Acked {
                    last_sequence: 1,
                    reports: 1,
                    ended: None,
                };
                for seq in 2..=6u64 {
                    // A new phase every report: each acknowledged report is a stored snapshot.
                    let mut r = running(&id, seq, t0 + seq as i64 * 3000, seq * 1000, 100);
                    r.phase = format!("phase-{seq}");
                    if c.report_progress(r).await.is_err() {
                        return;
                    }
                    let mut all = acked.lock().unwrap();
                    all[slot].1.last_sequence = seq;
                    all[slot].1.reports += 1;
                }
                if j % 2 == 0 {
                    let status = if j % 4 == 0 {
                        JobStatus::Succeeded
                    } else {
                        JobStatus::Failed
                    };
                    if c.report_progress(ended(&id, 7, t0 + 30_000, 7000, status))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    acked.lock().unwrap()[slot].1.ended = Some(status);
                }
            }
        }));
    }
    // Let the agents get well going, then kill the hub mid-stream.
    eventually(Duration::from_secs(60), || {
        let n = acked
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, a)| a.ended.is_some())
            .count();
        async move { (n >= 40).then_some(()) }
    })
    .await;
    hub.child.start_kill().unwrap();
    hub.child.wait().await.unwrap();
    for a in agents {
        a.await.unwrap();
    }

    let hub = start_process(&db).await;
    let mut c = TelemetryServiceClient::connect(hub.url.clone())
        .await
        .unwrap();
    let seen = acked.lock().unwrap().clone();
    let mut checked = 0;
    for (id, a) in seen.iter().filter(|(_, a)| a.reports > 0) {
        let h = c
            .get_history(GetHistoryRequest { job_id: id.clone() })
            .await
            .unwrap_or_else(|e| panic!("{id} lost: {e}"))
            .into_inner();
        let job = h.job.unwrap();
        let rec = h.performance.unwrap();
        match a.ended {
            Some(status) => {
                assert_eq!(
                    job.status, status as i32,
                    "{id}: acknowledged terminal report"
                );
                assert_eq!(rec.snapshot_count, 7, "{id}: every snapshot rolled up");
            }
            // A terminal report committed just before the kill, but never acknowledged.
            None if job.status != JobStatus::Running as i32 => {
                assert_eq!(rec.snapshot_count, 7, "{id}: rolled up from every snapshot");
            }
            None => {
                assert!(
                    rec.snapshot_count as u64 >= a.reports,
                    "{id}: {} snapshots stored, {} acknowledged",
                    rec.snapshot_count,
                    a.reports
                );
                // The job goes on when its agent reports again.
                let ack = c
                    .report_progress(running(id, 10, t0 + 40_000, 10_000, 100))
                    .await
                    .unwrap()
                    .into_inner();
                assert!(!ack.duplicate, "{id}: continues after the restart");
            }
        }
        checked += 1;
    }
    assert!(checked >= 40);
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let database = fresh_database(&dir);
    let mut hub = start_process(&database.url).await;
    let mut c = TelemetryServiceClient::connect(hub.url.clone())
        .await
        .unwrap();
    let t0 = now_ms() - 600_000;
    run_job(&mut c, "term-1", "vm-term", t0, 60, JobStatus::Succeeded).await;
    let mut r = first("term-2", "vm-term");
    r.sampled_at = Some(ts(t0));
    c.report_progress(r).await.unwrap();
    c.report_progress(running("term-2", 2, t0 + 30_000, 3_000_000_000, 0))
        .await
        .unwrap();
    let pid = hub.child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), hub.child.wait())
        .await
        .expect("the hub stops within 30 s of SIGTERM")
        .unwrap();
    assert!(exit.success(), "clean exit after SIGTERM: {exit:?}");

    let hub = start_process(&database.url).await;
    let mut c = TelemetryServiceClient::connect(hub.url.clone())
        .await
        .unwrap();
    let done = c
        .get_history(GetHistoryRequest {
            job_id: "term-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.job.unwrap().status, JobStatus::Succeeded as i32);
    let running_job = c
        .get_history(GetHistoryRequest {
            job_id: "term-2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(running_job.performance.unwrap().snapshot_count, 2);
}

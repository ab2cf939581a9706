//! The agent's reporter against a real hub: a hub that stops and restarts mid-job loses no
//! terminal report, stores no snapshot twice and keeps the agent's order.

use crate::common::*;
use backwatch::proto::{GetHistoryRequest, JobStatus};
use backwatch_agent::backoff::Backoff;
use backwatch_agent::proto as agent;
use backwatch_agent::{
    JobReporter, JobSpec, Outcome, Progress, ReportError, Reporter, ReporterConfig,
};
use std::time::{Duration, SystemTime};

const STEP: Duration = Duration::from_secs(30);
const BYTES_PER_STEP: u64 = 3_000_000_000;

fn reporter(url: String) -> Reporter {
    let mut config = ReporterConfig::new(url);
    config.backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        ..Backoff::default()
    };
    config.finish_timeout = Duration::from_secs(30);
    Reporter::new(config).unwrap()
}

fn start(reporter: &Reporter, job_id: &str) -> JobReporter {
    reporter.start_job(JobSpec {
        job_id: job_id.into(),
        machine: "vm-01".into(),
        job_type: agent::JobType::Full,
        machine_info: Some(agent::MachineInfo {
            cpu_cores: 4,
            memory_bytes: 16_000_000_000,
            disk_count: 2,
            os: "Debian 12".into(),
        }),
    })
}

/// Report `i` of a job that started at `t0`: one every 30 s on the agent's clock, 100 MB/s.
fn step(t0: SystemTime, i: u32) -> Progress {
    let bytes = u64::from(i) * BYTES_PER_STEP;
    Progress {
        phase: "transfer".into(),
        bytes_transferred: bytes,
        total_bytes: 10 * BYTES_PER_STEP,
        progress_percent: bytes as f64 * 10.0 / BYTES_PER_STEP as f64,
        transfer_speed_bps: 100_000_000 + u64::from(i) * 1_000_000,
        sampled_at: Some(t0 + STEP * i),
    }
}

/// Asserts the stored record: succeeded, one point per report (the terminal one included), in
/// the agent's order, 30 s apart, bytes growing to the final count.
async fn assert_complete_history(hub: &TestHub, job_id: &str, reports: u32) {
    let mut client = hub.client().await;
    let history = client
        .get_history(GetHistoryRequest {
            job_id: job_id.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let job = history.job.unwrap();
    assert_eq!(job.status(), JobStatus::Succeeded);
    assert_eq!(
        job.bytes_transferred,
        u64::from(reports - 1) * BYTES_PER_STEP
    );
    let performance = history.performance.unwrap();
    assert_eq!(
        performance.snapshot_count, reports,
        "one snapshot per report, none twice"
    );
    let elapsed: Vec<f64> = performance
        .points
        .iter()
        .map(|p| p.elapsed_seconds)
        .collect();
    let expected: Vec<f64> = (0..reports).map(|i| f64::from(i) * 30.0).collect();
    assert_eq!(elapsed, expected, "points in the agent's order");
    let bytes: Vec<u64> = performance
        .points
        .iter()
        .map(|p| p.bytes_transferred)
        .collect();
    assert!(bytes.windows(2).all(|w| w[0] < w[1]), "{bytes:?}");
}

#[tokio::test]
async fn reporter_rides_out_a_hub_restart_mid_job() {
    let mut hub = spawn_hub().await;
    let reporter = reporter(hub.url());
    let job = start(&reporter, "vm-01-1700000000000");
    let t0 = SystemTime::now() - Duration::from_secs(3600);
    for i in 0..5 {
        job.report(step(t0, i)).unwrap();
    }
    job.flush(Duration::from_secs(10)).await.unwrap();

    hub.stop().await;
    for i in 5..10 {
        job.report(step(t0, i)).unwrap();
    }
    // Let delivery fail and back off a few times against the stopped hub.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(job.backlog().0 > 0, "reports wait while the hub is down");

    hub.restart().await;
    let ack = job
        .finish(
            Outcome::Succeeded,
            Progress {
                phase: "finalize".into(),
                ..step(t0, 10)
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (ack.sequence, ack.job_status),
        (11, agent::JobStatus::Succeeded)
    );
    assert_complete_history(&hub, "vm-01-1700000000000", 11).await;
    assert_eq!(
        stored_snapshots(&hub, "vm-01-1700000000000"),
        0,
        "rolled up"
    );
}

#[tokio::test]
async fn reporter_started_while_the_hub_is_down_creates_the_job_when_it_returns() {
    let mut hub = spawn_hub().await;
    hub.stop().await;
    let reporter = reporter(hub.url());
    let job = start(&reporter, "vm-01-1700000001000");
    let t0 = SystemTime::now() - Duration::from_secs(600);
    for i in 0..4 {
        job.report(step(t0, i)).unwrap();
    }
    let finishing = tokio::spawn(async move {
        job.finish(
            Outcome::Succeeded,
            Progress {
                phase: "finalize".into(),
                ..step(t0, 4)
            },
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!finishing.is_finished(), "finish waits for the hub");

    hub.restart().await;
    let ack = finishing.await.unwrap().unwrap();
    assert_eq!(ack.job_status, agent::JobStatus::Succeeded);
    assert_complete_history(&hub, "vm-01-1700000001000", 5).await;
}

#[tokio::test]
async fn a_report_the_hub_refuses_is_returned_to_the_agent_not_retried() {
    let hub = spawn_hub().await;
    let reporter = reporter(hub.url());
    let job = start(&reporter, "vm-01-1700000002000");
    let t0 = SystemTime::now() - Duration::from_secs(600);
    job.report(step(t0, 0)).unwrap();
    job.report(Progress {
        progress_percent: 150.0,
        ..step(t0, 1)
    })
    .unwrap();
    let error = job
        .finish(Outcome::Succeeded, step(t0, 2))
        .await
        .unwrap_err();
    match &error {
        ReportError::Rejected {
            sequence,
            code,
            message,
        } => {
            assert_eq!((*sequence, *code), (2, tonic::Code::InvalidArgument));
            assert!(message.contains("progress_percent"), "{message}");
        }
        other => panic!("expected a rejection, got {other}"),
    }
    assert_eq!(
        job.report(step(t0, 3)).unwrap_err(),
        error,
        "the job's telemetry stays stopped"
    );
    let mut client = hub.client().await;
    let stored = client
        .get_history(GetHistoryRequest {
            job_id: "vm-01-1700000002000".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stored.job.unwrap().status(),
        JobStatus::Running,
        "the refused terminal was never sent"
    );
}

//! Ingestion: job creation, dedupe, validation, snapshot policy, rollup exactly once, the
//! stall sweep.

use crate::common::*;
use backwatch::proto::{
    self, GetHistoryRequest, GetMachineSummaryRequest, JobStatus, ListJobsRequest,
    ListMachinesRequest,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tonic::Code;

#[tokio::test]
async fn first_report_creates_the_job_and_needs_machine_and_type() {
    let hub = spawn_hub().await;
    let mut c = hub.client().await;
    let mut r = first("j-1", "vm-01");
    r.machine.clear();
    let (code, msg) = failure(c.report_progress(r).await);
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.starts_with("machine:"), "{msg}");
    let mut r = first("j-1", "vm-01");
    r.job_type = 0;
    let (code, msg) = failure(c.report_progress(r).await);
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.starts_with("job_type:"), "{msg}");
    assert_eq!(
        failure(
            c.get_history(GetHistoryRequest {
                job_id: "j-1".into()
            })
            .await
        )
        .0,
        Code::NotFound
    );

    let ack = c
        .report_progress(first("j-1", "vm-01"))
        .await
        .unwrap()
        .into_inner();
    assert!(!ack.duplicate);
    assert_eq!(ack.job_status, JobStatus::Running as i32);
    let h = c
        .get_history(GetHistoryRequest {
            job_id: "j-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let job = h.job.unwrap();
    assert_eq!(
        (job.machine.as_str(), job.status),
        ("vm-01", JobStatus::Running as i32)
    );
    assert_eq!(
        stored_snapshots(&hub, "j-1"),
        1,
        "the first report is a snapshot"
    );
}

#[tokio::test]
async fn duplicates_are_acknowledged_and_change_nothing() {
    let hub = spawn_hub().await;
    let mut c = hub.client().await;
    let t0 = now_ms() - 60_000;
    let mut r = first("j-dup", "vm-01");
    r.sampled_at = Some(ts(t0));
    c.report_progress(r).await.unwrap();
    c.report_progress(running("j-dup", 5, t0 + 3000, 300, 100))
        .await
        .unwrap();
    for seq in [5, 4, 1] {
        let ack = c
            .report_progress(running("j-dup", seq, t0 + 6000, 999_999, 7))
            .await
            .unwrap()
            .into_inner();
        assert!(ack.duplicate, "sequence {seq} is not above 5");
    }
    let job = c
        .get_history(GetHistoryRequest {
            job_id: "j-dup".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(job.bytes_transferred, 300);
}

#[tokio::test]
async fn bad_reports_name_the_field_and_the_rule_and_store_nothing() {
    let hub = spawn_hub().await;
    let mut c = hub.client().await;
    let t0 = now_ms() - 60_000;
    let mut r = first("j-bad", "vm-01");
    r.sampled_at = Some(ts(t0));
    r.bytes_transferred = 1_000;
    c.report_progress(r).await.unwrap();
    let good = || running("j-bad", 2, t0 + 3000, 2_000, 100);
    let cases: Vec<(&str, proto::ReportProgressRequest)> = vec![
        (
            "job_id",
            proto::ReportProgressRequest {
                job_id: "has space".into(),
                ..good()
            },
        ),
        (
            "job_id",
            proto::ReportProgressRequest {
                job_id: "x".repeat(129),
                ..good()
            },
        ),
        (
            "job_id",
            proto::ReportProgressRequest {
                job_id: String::new(),
                ..good()
            },
        ),
        (
            "machine",
            proto::ReportProgressRequest {
                machine: "bell\u{7}".into(),
                ..good()
            },
        ),
        (
            "machine",
            proto::ReportProgressRequest {
                machine: "m".repeat(256),
                ..good()
            },
        ),
        (
            "phase",
            proto::ReportProgressRequest {
                phase: "p".repeat(65),
                ..good()
            },
        ),
        (
            "error_message",
            proto::ReportProgressRequest {
                error_message: "e".repeat(4097),
                ..good()
            },
        ),
        (
            "progress_percent",
            proto::ReportProgressRequest {
                progress_percent: f64::INFINITY,
                ..good()
            },
        ),
        (
            "progress_percent",
            proto::ReportProgressRequest {
                progress_percent: -1.0,
                ..good()
            },
        ),
        (
            "status",
            proto::ReportProgressRequest {
                status: 0,
                ..good()
            },
        ),
        (
            "status",
            proto::ReportProgressRequest {
                status: JobStatus::Abandoned as i32,
                ..good()
            },
        ),
        (
            "status",
            proto::ReportProgressRequest {
                status: 42,
                ..good()
            },
        ),
        (
            "sampled_at",
            proto::ReportProgressRequest {
                sampled_at: Some(ts(now_ms() + 25 * 3600 * 1000)),
                ..good()
            },
        ),
        (
            "bytes_transferred",
            proto::ReportProgressRequest {
                bytes_transferred: 999,
                ..good()
            },
        ),
        (
            "machine",
            proto::ReportProgressRequest {
                machine: "another-vm".into(),
                ..good()
            },
        ),
    ];
    for (field, req) in cases {
        let (code, msg) = failure(c.report_progress(req).await);
        assert_eq!(code, Code::InvalidArgument, "{field}: {msg}");
        assert!(
            msg.starts_with(&format!("{field}: ")),
            "message {msg:?} should name {field}"
        );
    }
    let job = c
        .get_history(GetHistoryRequest {
            job_id: "j-bad".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(
        job.bytes_transferred, 1_000,
        "rejected reports changed nothing"
    );
    let ack = c.report_progress(good()).await.unwrap().into_inner();
    assert!(
        !ack.duplicate,
        "sequence 2 is still free after the rejections"
    );
}

#[tokio::test]
async fn snapshots_follow_the_agent_clock_and_the_rollup_keeps_the_true_peak() {
    let hub = spawn_hub().await;
    let mut c = hub.client().await;
    // Five minutes of reports every 3 s, sent late and fast (as after an outage).
    let t0 = now_ms() - 3_600_000;
    let mut r = first("j-curve", "vm-01");
    r.sampled_at = Some(ts(t0));
    r.phase = "transfer".into();
    c.report_progress(r).await.unwrap();
    let mut bytes = 0;
    for i in 1..100u64 {
        let speed = if i == 15 { 900_000_000 } else { 100_000_000 };
        bytes += speed * 3;
        c.report_progress(running(
            "j-curve",
            i + 1,
            t0 + i as i64 * 3000,
            bytes,
            speed,
        ))
        .await
        .unwrap();
    }
    // 0, 30, …, 270 s on the agent clock, plus the unstored peak at 45 s.
    assert_eq!(stored_snapshots(&hub, "j-curve"), 11);
    let so_far = c
        .get_history(GetHistoryRequest {
            job_id: "j-curve".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        so_far.performance.unwrap().peak_speed_bps,
        900_000_000,
        "record so far of a running job"
    );

    c.report_progress(ended(
        "j-curve",
        101,
        t0 + 300_000,
        bytes + 300_000_000,
        JobStatus::Succeeded,
    ))
    .await
    .unwrap();
    let h = c
        .get_history(GetHistoryRequest {
            job_id: "j-curve".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let rec = h.performance.unwrap();
    assert_eq!(rec.snapshot_count, 12);
    assert_eq!(rec.peak_speed_bps, 900_000_000);
    assert_eq!(rec.min_speed_bps, 100_000_000);
    assert_eq!(rec.duration.unwrap().seconds, 300);
    assert_eq!(rec.average_speed_bps, (bytes + 300_000_000) / 300);
    assert!(
        rec.points
            .iter()
            .any(|p| p.speed_bps == 900_000_000 && p.elapsed_seconds == 45.0),
        "the curve holds the peak"
    );
    assert_eq!(rec.points.first().unwrap().elapsed_seconds, 0.0);
    assert_eq!(rec.points.last().unwrap().elapsed_seconds, 300.0);
    assert_eq!(
        stored_snapshots(&hub, "j-curve"),
        0,
        "raw snapshots are deleted by the rollup"
    );
    assert_eq!(h.job.unwrap().status, JobStatus::Succeeded as i32);
}

#[tokio::test]
async fn speed_is_derived_and_the_eta_appears_only_with_enough_data() {
    let hub = spawn_hub().await;
    let mut c = hub.client().await;
    let t0 = now_ms() - 600_000;
    let mut r = first("j-eta", "vm-01");
    r.sampled_at = Some(ts(t0));
    c.report_progress(r).await.unwrap();
    c.report_progress(running("j-eta", 2, t0 + 30_000, 3_000_000_000, 0))
        .await
        .unwrap();
    let job = c
        .get_history(GetHistoryRequest {
            job_id: "j-eta".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(
        job.transfer_speed_bps, 100_000_000,
        "derived from bytes and agent time"
    );
    assert!(
        job.estimated_completion.is_none(),
        "30 s of reports is not enough"
    );
    c.report_progress(running("j-eta", 3, t0 + 60_000, 6_000_000_000, 0))
        .await
        .unwrap();
    let job = c
        .get_history(GetHistoryRequest {
            job_id: "j-eta".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    let eta = job.estimated_completion.expect("ETA after 60 s and 60 %");
    assert_eq!(eta.seconds, (t0 + 100_000) / 1000, "4 GB left at 100 MB/s");
}

#[tokio::test]
async fn ended_jobs_refuse_reports_but_accept_terminal_retries() {
    let hub = spawn_hub().await;
    let mut c = hub.client().await;
    let t0 = now_ms() - 600_000;
    run_job(&mut c, "j-end", "vm-01", t0, 60, JobStatus::Failed).await;
    let last_seq = 21;
    let retry = c
        .report_progress(ended(
            "j-end",
            last_seq,
            t0 + 60_000,
            6_000_000_000,
            JobStatus::Failed,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(retry.duplicate);
    assert_eq!(retry.job_status, JobStatus::Failed as i32);
    let (code, msg) = failure(
        c.report_progress(running(
            "j-end",
            last_seq + 1,
            t0 + 63_000,
            6_000_000_000,
            1,
        ))
        .await,
    );
    assert_eq!(code, Code::FailedPrecondition);
    assert!(msg.contains("ended"), "{msg}");
    let job = c
        .get_history(GetHistoryRequest {
            job_id: "j-end".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(job.error_message, "disk 2: read error");
}

#[tokio::test]
async fn concurrent_terminal_reports_roll_up_once() {
    let hub = spawn_hub().await;
    let mut c = hub.client().await;
    let t0 = now_ms() - 600_000;
    let mut r = first("j-race", "vm-01");
    r.sampled_at = Some(ts(t0));
    c.report_progress(r).await.unwrap();
    c.report_progress(running("j-race", 2, t0 + 30_000, 3_000_000_000, 0))
        .await
        .unwrap();
    let mut calls = Vec::new();
    for _ in 0..16 {
        let mut c = hub.client().await;
        calls.push(tokio::spawn(async move {
            c.report_progress(ended(
                "j-race",
                3,
                t0 + 40_000,
                4_000_000_000,
                JobStatus::Succeeded,
            ))
            .await
            .unwrap()
            .into_inner()
        }));
    }
    let mut fresh = 0;
    for call in calls {
        let ack = call.await.unwrap();
        assert_eq!(ack.job_status, JobStatus::Succeeded as i32);
        fresh += usize::from(!ack.duplicate);
    }
    assert_eq!(fresh, 1, "exactly one report ended the job");
    let rec = c
        .get_history(GetHistoryRequest {
            job_id: "j-race".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .performance
        .unwrap();
    assert_eq!(rec.snapshot_count, 3);
}

#[tokio::test]
async fn silent_jobs_are_abandoned_and_rolled_up_from_what_was_stored() {
    let hub = spawn_hub_with(|c| c.stall_timeout = Duration::from_secs(1)).await;
    let mut c = hub.client().await;
    let t0 = now_ms() - 120_000;
    let mut r = first("j-silent", "vm-01");
    r.sampled_at = Some(ts(t0));
    c.report_progress(r).await.unwrap();
    c.report_progress(running("j-silent", 2, t0 + 30_000, 3_000_000_000, 0))
        .await
        .unwrap();
    c.report_progress(running("j-silent", 3, t0 + 33_000, 3_300_000_000, 0))
        .await
        .unwrap();
    let h = once_abandoned(&c, "j-silent", Duration::from_secs(20)).await;
    let rec = h.performance.unwrap();
    assert_eq!(
        rec.snapshot_count, 3,
        "the two stored snapshots and the last report"
    );
    assert_eq!(rec.duration.unwrap().seconds, 33);
    assert_eq!(rec.bytes_transferred, 3_300_000_000);
    let (code, _) = failure(
        c.report_progress(running("j-silent", 4, t0 + 36_000, 3_400_000_000, 0))
            .await,
    );
    assert_eq!(
        code,
        Code::FailedPrecondition,
        "an abandoned job accepts nothing more"
    );
}

#[tokio::test]
async fn many_jobs_starting_at_once_are_all_committed() {
    let hub = spawn_hub().await;
    let mut calls = Vec::new();
    for i in 0..200 {
        let mut c = hub.client().await;
        calls.push(tokio::spawn(async move {
            c.report_progress(first(&format!("burst-{i}"), &format!("vm-{}", i % 7)))
                .await
                .unwrap()
        }));
    }
    for call in calls {
        call.await.unwrap();
    }
    hub.stop_and_count_jobs(200).await;
}

/// SQLite: the write-ahead log must start over after a checkpoint even when writes never
/// pause (a checkpoint racing a busy writer never completes, and the log grows by gigabytes).
/// The log's header counts its restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_log_starts_over_while_writes_never_pause() {
    let hub = spawn_hub().await;
    let Some(path) = hub.config.database_url.strip_prefix("sqlite://") else {
        return; // PostgreSQL: no such log
    };
    let wal = format!("{path}-wal");
    let restarts = move || {
        let header = std::fs::read(&wal).unwrap_or_default();
        header
            .get(12..16)
            .map_or(0, |b| u32::from_be_bytes(b.try_into().unwrap()))
    };
    let start = now_ms() - 23 * 3_600_000;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for i in 0..32 {
        let (mut c, stop) = (hub.client().await, stop.clone());
        writers.push(tokio::spawn(async move {
            let job = format!("busy-{i}");
            let opening = proto::ReportProgressRequest {
                sampled_at: Some(ts(start)),
                ..first(&job, "vm-busy")
            };
            c.report_progress(opening).await.unwrap();
            // Agent clock 30 s apart: every report stores a snapshot.
            for k in 2.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let at = start + k as i64 * 30_000;
                c.report_progress(running(&job, k, at, k * 1_000_000, 1_000_000))
                    .await
                    .unwrap();
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = restarts();
    let restarted = tokio::time::timeout(Duration::from_secs(15), async {
        while restarts() <= before {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    assert!(
        restarted.is_ok(),
        "the log never started over in 15 s of writes (restarts {before})"
    );
}

impl TestHub {
    async fn stop_and_count_jobs(mut self, expected: i64) {
        self.stop().await;
        use backwatch::store::schema::backup_jobs::dsl;
        use diesel::prelude::*;
        let store = self.database();
        let mut conn = store.connection().unwrap();
        let n: i64 = dsl::backup_jobs.count().get_result(&mut *conn).unwrap();
        assert_eq!(n, expected);
    }
}

#[tokio::test]
async fn a_clean_restart_keeps_running_jobs_going() {
    let mut hub = spawn_hub().await;
    let mut c = hub.client().await;
    let t0 = now_ms() - 600_000;
    let mut r = first("j-restart", "vm-01");
    r.sampled_at = Some(ts(t0));
    c.report_progress(r).await.unwrap();
    c.report_progress(running("j-restart", 2, t0 + 30_000, 3_000_000_000, 0))
        .await
        .unwrap();
    c.report_progress(running("j-restart", 3, t0 + 33_000, 3_300_000_000, 0))
        .await
        .unwrap();
    hub.restart().await;
    let mut c = hub.client().await;
    // Before its agent reports again, reads show the job as of its last stored snapshot (on a
    // shared database, where every report is written, as of its last report).
    let listed = c
        .list_jobs(ListJobsRequest {
            machine: "vm-01".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let job = listed.jobs[0].job.clone().unwrap();
    assert!(
        job.bytes_transferred >= 3_000_000_000 && job.phase == "transfer",
        "the listed job after the restart: {job:?}"
    );
    let job = c
        .get_history(GetHistoryRequest {
            job_id: "j-restart".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert!(
        job.bytes_transferred >= 3_000_000_000,
        "its history: {job:?}"
    );
    let ack = c
        .report_progress(running("j-restart", 2, t0 + 30_000, 3_000_000_000, 0))
        .await
        .unwrap()
        .into_inner();
    assert!(ack.duplicate, "the stored sequence survives the restart");
    c.report_progress(ended(
        "j-restart",
        3,
        t0 + 60_000,
        6_000_000_000,
        JobStatus::Succeeded,
    ))
    .await
    .unwrap();
    let rec = c
        .get_history(GetHistoryRequest {
            job_id: "j-restart".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .performance
        .unwrap();
    assert_eq!(rec.snapshot_count, 3);
    assert_eq!(rec.average_speed_bps, 100_000_000);
}

/// A job whose agent never comes back after a restart is abandoned, from what was stored. On
/// SQLite not before a stall timeout after the restart (its agent may have been trying while
/// the hub was down; the row keeps the first report's time); on a shared database, whose rows
/// carry every report's time, not before a stall timeout after its last report.
#[tokio::test]
async fn a_job_silent_across_a_restart_is_abandoned_after_the_stall_timeout() {
    let mut hub = spawn_hub_with(|c| c.stall_timeout = Duration::from_secs(2)).await;
    let mut c = hub.client().await;
    let t0 = now_ms() - 600_000;
    let mut r = first("j-gone", "vm-01");
    r.sampled_at = Some(ts(t0));
    c.report_progress(r).await.unwrap();
    // Reports for longer than the stall timeout, each stored (a new phase), so the job's row
    // on SQLite is older than a stall timeout when the hub restarts.
    for seq in 2..=7u64 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut r = running(
            "j-gone",
            seq,
            t0 + 30_000 * seq as i64,
            seq * 1_000_000_000,
            0,
        );
        r.phase = format!("phase-{seq}");
        c.report_progress(r).await.unwrap();
    }
    let last_report = std::time::Instant::now();
    hub.restart().await;
    let since = if hub.config.database_url.starts_with("sqlite://") {
        std::time::Instant::now()
    } else {
        last_report
    };
    let c = hub.client().await;
    let h = once_abandoned(&c, "j-gone", Duration::from_secs(20)).await;
    assert!(
        since.elapsed() >= Duration::from_secs(2),
        "abandoned {:?} after the restart (SQLite) or its last report, before its stall timeout",
        since.elapsed()
    );
    let rec = h.performance.unwrap();
    assert_eq!(rec.snapshot_count, 7, "every stored snapshot");
    assert_eq!(rec.bytes_transferred, 7_000_000_000);
    assert_eq!(rec.duration.unwrap().seconds, 210);
}

/// A machine's "last seen" moves with each stored snapshot of its running job, not only when
/// one of its jobs starts or ends.
#[tokio::test]
async fn a_machines_last_seen_follows_its_running_jobs_snapshots() {
    let hub = spawn_hub().await;
    let mut c = hub.client().await;
    let t0 = now_ms() - 600_000;
    let mut r = first("j-seen", "vm-seen");
    r.sampled_at = Some(ts(t0));
    c.report_progress(r).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = now_ms();
    c.report_progress(running("j-seen", 2, t0 + 30_000, 3_000_000_000, 0))
        .await
        .unwrap();
    let millis = |m: proto::Machine| {
        let t = m.last_seen_at.unwrap();
        t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
    };
    let summary = c
        .get_machine_summary(GetMachineSummaryRequest {
            machine: "vm-seen".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let seen = millis(summary.machine.unwrap());
    assert!(
        seen >= before,
        "summary: last seen {seen}, snapshot stored after {before}"
    );
    let listed = c
        .list_machines(ListMachinesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let m = listed
        .machines
        .into_iter()
        .find_map(|o| o.machine.filter(|m| m.name == "vm-seen"))
        .unwrap();
    let seen = millis(m);
    assert!(
        seen >= before,
        "list: last seen {seen}, snapshot stored after {before}"
    );
}

//! WatchJob: the full state first, an update every interval even when nothing changed, the
//! record last, then the end of the stream.

use crate::common::*;
use backwatch::proto::{JobStatus, WatchJobRequest};
use std::time::Duration;
use tokio_stream::StreamExt;
use tonic::Code;

fn one_second() -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: 1,
        nanos: 0,
    })
}

#[tokio::test]
async fn a_watcher_follows_a_job_to_its_record_and_the_end_of_the_stream() {
    let hub = spawn_hub().await;
    let mut c = hub.client().await;
    let t0 = now_ms() - 120_000;
    let mut r = first("w-1", "vm-01");
    r.sampled_at = Some(ts(t0));
    c.report_progress(r).await.unwrap();
    c.report_progress(running("w-1", 2, t0 + 30_000, 3_000_000_000, 0))
        .await
        .unwrap();
    c.report_progress(running("w-1", 3, t0 + 33_000, 3_300_000_000, 0))
        .await
        .unwrap();

    let mut stream = c
        .watch_job(WatchJobRequest {
            job_id: "w-1".into(),
            interval: one_second(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut second = hub
        .client()
        .await
        .watch_job(WatchJobRequest {
            job_id: "w-1".into(),
            interval: one_second(),
        })
        .await
        .unwrap()
        .into_inner();
    let first_msg = stream.next().await.unwrap().unwrap();
    let elapsed: Vec<f64> = first_msg.points.iter().map(|p| p.elapsed_seconds).collect();
    assert_eq!(
        elapsed,
        [0.0, 30.0, 33.0],
        "all points so far, the unstored latest included"
    );
    assert!(first_msg.performance.is_none());
    assert_eq!(second.next().await.unwrap().unwrap().points.len(), 3);

    // Silent agent: updates still come, with no new points.
    let idle = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(idle.points.is_empty());
    assert_eq!(idle.job.unwrap().bytes_transferred, 3_300_000_000);

    c.report_progress(running("w-1", 4, t0 + 36_000, 3_600_000_000, 0))
        .await
        .unwrap();
    let grown = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let m = stream.next().await.unwrap().unwrap();
            if !m.points.is_empty() {
                return m;
            }
        }
    })
    .await
    .expect("the new point arrives within a few ticks");
    assert_eq!(grown.points.len(), 1);
    assert_eq!(grown.points[0].elapsed_seconds, 36.0);

    c.report_progress(ended(
        "w-1",
        5,
        t0 + 40_000,
        4_000_000_000,
        JobStatus::Succeeded,
    ))
    .await
    .unwrap();
    let mut last = None;
    while let Some(msg) = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
    {
        last = Some(msg.unwrap());
    }
    let last = last.expect("a final message");
    let rec = last
        .performance
        .expect("the last message carries the record");
    assert_eq!(rec.duration.unwrap().seconds, 40);
    assert_eq!(last.job.unwrap().status, JobStatus::Succeeded as i32);
    // The second watcher shares the feed and ends the same way.
    let mut last2 = None;
    while let Some(msg) = tokio::time::timeout(Duration::from_secs(10), second.next())
        .await
        .unwrap()
    {
        last2 = Some(msg.unwrap());
    }
    assert!(last2.unwrap().performance.is_some());
}

#[tokio::test]
async fn watching_an_ended_job_gives_its_record_and_ends() {
    let hub = spawn_hub().await;
    let mut c = hub.client().await;
    run_job(
        &mut c,
        "w-done",
        "vm-01",
        now_ms() - 600_000,
        60,
        JobStatus::Succeeded,
    )
    .await;
    let mut stream = c
        .watch_job(WatchJobRequest {
            job_id: "w-done".into(),
            interval: None,
        })
        .await
        .unwrap()
        .into_inner();
    let msg = stream.next().await.unwrap().unwrap();
    assert!(msg.performance.is_some());
    assert!(!msg.points.is_empty());
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn watch_rejects_unknown_jobs_and_too_short_intervals() {
    let hub = spawn_hub().await;
    let mut c = hub.client().await;
    assert_eq!(
        failure(
            c.watch_job(WatchJobRequest {
                job_id: "ghost".into(),
                interval: None
            })
            .await
        )
        .0,
        Code::NotFound
    );
    c.report_progress(first("w-2", "vm-01")).await.unwrap();
    let (code, msg) = failure(
        c.watch_job(WatchJobRequest {
            job_id: "w-2".into(),
            interval: Some(prost_types::Duration {
                seconds: 0,
                nanos: 500_000_000,
            }),
        })
        .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.starts_with("interval:"), "{msg}");
}

//! Several hubs on one PostgreSQL database (SPEC 7): cross-hub watch, racing terminal reports,
//! the stall sweep on every hub, sequence dedupe across hubs, and riding out a database outage.
//! These run when TEST_DATABASE_URL names a PostgreSQL server (scripts/test.sh does so).

use crate::common::*;
use backwatch::proto::{GetHistoryRequest, JobStatus, WatchJobRequest};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_stream::StreamExt;
use tonic::Code;

/// Two hubs on one fresh PostgreSQL database, or None on SQLite.
async fn two_hubs(
    adjust: impl Fn(&mut backwatch::config::ServeConfig),
) -> Option<(TestHub, TestHub)> {
    if !std::env::var("TEST_DATABASE_URL").is_ok_and(|u| u.starts_with("postgres")) {
        eprintln!("needs TEST_DATABASE_URL=postgres://…; scripts/test.sh runs it on PostgreSQL");
        return None;
    }
    let a = spawn_hub_with(&adjust).await;
    let b = spawn_hub_on(&a.config.database_url, &adjust).await;
    Some((a, b))
}

#[tokio::test]
async fn a_watcher_on_one_hub_follows_reports_sent_to_another() {
    let Some((a, b)) = two_hubs(|_| {}).await else {
        return;
    };
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    let t0 = now_ms() - 120_000;
    let mut r = first("x-watch", "vm-x");
    r.sampled_at = Some(ts(t0));
    ca.report_progress(r).await.unwrap();
    let mut stream = cb
        .watch_job(WatchJobRequest {
            job_id: "x-watch".into(),
            interval: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.next().await.unwrap().unwrap().points.len(), 1);
    ca.report_progress(running("x-watch", 2, t0 + 3_000, 300_000_000, 0))
        .await
        .unwrap();
    let grown = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let m = stream.next().await.unwrap().unwrap();
            if !m.points.is_empty() {
                return m;
            }
        }
    })
    .await
    .expect("hub B relays a report taken by hub A within a few ticks");
    assert_eq!(grown.points[0].elapsed_seconds, 3.0);
    assert_eq!(grown.job.unwrap().transfer_speed_bps, 100_000_000);
    ca.report_progress(ended(
        "x-watch",
        3,
        t0 + 6_000,
        600_000_000,
        JobStatus::Succeeded,
    ))
    .await
    .unwrap();
    let mut last = None;
    while let Some(m) = tokio::time::timeout(Duration::from_secs(15), stream.next())
        .await
        .unwrap()
    {
        last = Some(m.unwrap());
    }
    let last = last.unwrap();
    assert!(
        last.performance.is_some(),
        "the record from hub A ends the stream on hub B"
    );
    assert_eq!(last.job.unwrap().status, JobStatus::Succeeded as i32);
}

#[tokio::test]
async fn terminal_reports_racing_on_two_hubs_roll_up_once() {
    let Some((a, b)) = two_hubs(|_| {}).await else {
        return;
    };
    let t0 = now_ms() - 600_000;
    for j in 0..5 {
        let id = format!("x-race-{j}");
        let mut c = a.client().await;
        let mut r = first(&id, "vm-x");
        r.sampled_at = Some(ts(t0));
        c.report_progress(r).await.unwrap();
        c.report_progress(running(&id, 2, t0 + 30_000, 3_000_000_000, 0))
            .await
            .unwrap();
        let mut calls = Vec::new();
        for k in 0..8 {
            let mut c = if k % 2 == 0 {
                a.client().await
            } else {
                b.client().await
            };
            let id = id.clone();
            calls.push(tokio::spawn(async move {
                c.report_progress(ended(
                    &id,
                    3,
                    t0 + 60_000,
                    6_000_000_000,
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
        assert_eq!(
            fresh, 1,
            "{id}: exactly one terminal report is not a duplicate"
        );
        let rec = c
            .get_history(GetHistoryRequest { job_id: id.clone() })
            .await
            .unwrap()
            .into_inner()
            .performance
            .unwrap();
        assert_eq!(rec.snapshot_count, 3, "{id}");
        assert_eq!(stored_snapshots(&a, &id), 0);
    }
}

#[tokio::test]
async fn sequence_dedupe_holds_when_reports_alternate_between_hubs() {
    let Some((a, b)) = two_hubs(|_| {}).await else {
        return;
    };
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    let t0 = now_ms() - 600_000;
    let mut r = first("x-alt", "vm-x");
    r.sampled_at = Some(ts(t0));
    assert!(
        !ca.report_progress(r.clone())
            .await
            .unwrap()
            .into_inner()
            .duplicate
    );
    assert!(
        cb.report_progress(r).await.unwrap().into_inner().duplicate,
        "creation retried on B"
    );
    assert!(
        !cb.report_progress(running("x-alt", 2, t0 + 3000, 300, 100))
            .await
            .unwrap()
            .into_inner()
            .duplicate
    );
    assert!(
        !ca.report_progress(running("x-alt", 3, t0 + 6000, 600, 100))
            .await
            .unwrap()
            .into_inner()
            .duplicate
    );
    assert!(
        cb.report_progress(running("x-alt", 3, t0 + 6000, 600, 100))
            .await
            .unwrap()
            .into_inner()
            .duplicate
    );
    assert!(
        ca.report_progress(running("x-alt", 2, t0 + 3000, 300, 100))
            .await
            .unwrap()
            .into_inner()
            .duplicate
    );
    assert!(
        !cb.report_progress(running("x-alt", 4, t0 + 9000, 900, 100))
            .await
            .unwrap()
            .into_inner()
            .duplicate
    );
    let job = ca
        .get_history(GetHistoryRequest {
            job_id: "x-alt".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(job.bytes_transferred, 900, "hub A sees what hub B accepted");
}

#[tokio::test]
async fn the_stall_sweep_on_two_hubs_abandons_each_job_once() {
    let Some((a, b)) = two_hubs(|c| c.stall_timeout = Duration::from_secs(1)).await else {
        return;
    };
    let t0 = now_ms() - 600_000;
    for j in 0..10 {
        let mut c = if j % 2 == 0 {
            a.client().await
        } else {
            b.client().await
        };
        let id = format!("x-stall-{j}");
        let mut r = first(&id, "vm-x");
        r.sampled_at = Some(ts(t0));
        c.report_progress(r).await.unwrap();
        c.report_progress(running(&id, 2, t0 + 30_000, 3_000_000_000, 0))
            .await
            .unwrap();
    }
    let mut c = a.client().await;
    for j in 0..10 {
        let id = format!("x-stall-{j}");
        let h = once_abandoned(&c, &id, Duration::from_secs(30)).await;
        assert_eq!(
            h.performance.unwrap().snapshot_count,
            2,
            "{id}: rolled up once from both snapshots"
        );
    }
    let (code, _) = failure(
        c.report_progress(running("x-stall-0", 3, t0 + 33_000, 3_100_000_000, 0))
            .await,
    );
    assert_eq!(code, Code::FailedPrecondition);
}

/// A TCP proxy in front of PostgreSQL that the test can cut and restore.
struct Proxy {
    addr: std::net::SocketAddr,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (c, l) = (cut.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                l.lock().unwrap().push(task.abort_handle());
            }
        });
        Proxy { addr, cut, links }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

async fn health(hub: &TestHub) -> Option<i32> {
    let channel = tonic::transport::Endpoint::from_shared(hub.url())
        .ok()?
        .connect()
        .await
        .ok()?;
    let mut h = tonic_health::pb::health_client::HealthClient::new(channel);
    let r = h
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()?;
    Some(r.into_inner().status)
}

#[tokio::test]
async fn the_hub_rides_out_a_database_outage() {
    let Some((a, _b)) = two_hubs(|_| {}).await else {
        return;
    };
    // A third hub reaches the same database through a proxy the test controls.
    let url = a.config.database_url.clone();
    let (scheme_user, rest) = url.split_once('@').unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let proxy = Proxy::start(host.to_string()).await;
    let hub = spawn_hub_on(&format!("{scheme_user}@{}/{path}", proxy.addr), |_| {}).await;
    let mut c = hub.client().await;
    let t0 = now_ms() - 600_000;
    let mut r = first("x-outage", "vm-x");
    r.sampled_at = Some(ts(t0));
    c.report_progress(r).await.unwrap();
    c.report_progress(running("x-outage", 2, t0 + 30_000, 3_000_000_000, 0))
        .await
        .unwrap();
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    assert_eq!(health(&hub).await, Some(serving));

    proxy.cut();
    let (code, _) = failure(
        c.report_progress(running("x-outage", 3, t0 + 60_000, 6_000_000_000, 0))
            .await,
    );
    assert_eq!(
        code,
        Code::Unavailable,
        "reports that need a commit are refused while the database is away"
    );
    eventually(Duration::from_secs(30), || async {
        (health(&hub).await != Some(serving)).then_some(())
    })
    .await;

    proxy.restore();
    eventually(Duration::from_secs(30), || async {
        (health(&hub).await == Some(serving)).then_some(())
    })
    .await;
    let ack = c
        .report_progress(running("x-outage", 3, t0 + 60_000, 6_000_000_000, 0))
        .await
        .unwrap()
        .into_inner();
    assert!(
        !ack.duplicate,
        "the refused report is taken when the agent retries"
    );
    c.report_progress(ended(
        "x-outage",
        4,
        t0 + 90_000,
        9_000_000_000,
        JobStatus::Succeeded,
    ))
    .await
    .unwrap();
    let rec = c
        .get_history(GetHistoryRequest {
            job_id: "x-outage".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .performance
        .unwrap();
    assert_eq!(rec.snapshot_count, 4, "nothing acknowledged was lost");
}

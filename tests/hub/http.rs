//! Plain HTTP for scripts: the JSON twins of the read calls compared with the gRPC answers,
//! server-sent events following a job to its record, and JSON errors with their HTTP status.

use crate::common::*;
use backwatch::http::json::ProtoJson;
use backwatch::proto::{
    GetHistoryRequest, GetMachineSummaryRequest, JobStatus, ListJobsRequest, ListMachinesRequest,
    WatchJobRequest,
};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use serde_json::{json, Value};
use std::time::{Duration, UNIX_EPOCH};
use tokio_stream::StreamExt;

/// Sends one request on a new HTTP/1.1 connection, as curl would.
async fn request(hub: &TestHub, method: &str, path: &str) -> http::Response<Incoming> {
    request_as(hub, method, path, None).await
}

/// The same, with `authorization: Bearer <token>`.
async fn request_as(
    hub: &TestHub,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> http::Response<Incoming> {
    let stream = tokio::net::TcpStream::connect(hub.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", hub.addr.to_string());
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let req = req.body(Empty::<Bytes>::new()).unwrap();
    sender.send_request(req).await.unwrap()
}

/// GETs `path` and returns the status and the JSON body.
async fn get_json(hub: &TestHub, path: &str) -> (u16, Value) {
    into_json(path, request(hub, "GET", path).await).await
}

async fn into_json(path: &str, reply: http::Response<Incoming>) -> (u16, Value) {
    let status = reply.status().as_u16();
    let kind = reply.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(kind, "application/json", "{path}");
    let body = reply.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&body)));
    (status, value)
}

/// GETs `path`, expecting 200, and returns the JSON body.
async fn get_ok(hub: &TestHub, path: &str) -> Value {
    let (status, body) = get_json(hub, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// A server-sent event stream, read as it arrives.
struct Events {
    body: Incoming,
    buffer: String,
}

impl Events {
    async fn open(hub: &TestHub, path: &str) -> Events {
        let reply = request(hub, "GET", path).await;
        assert_eq!(reply.status(), 200, "{path}");
        assert_eq!(reply.headers()["content-type"], "text/event-stream");
        Events {
            body: reply.into_body(),
            buffer: String::new(),
        }
    }

    /// The next event's name and JSON data; None once the response has ended.
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut name, mut data) = ("message".to_string(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim_start().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((name, serde_json::from_str(&data).unwrap()));
            }
            let frame = self.body.frame().await?.unwrap();
            if let Ok(bytes) = frame.into_data() {
                self.buffer.push_str(std::str::from_utf8(&bytes).unwrap());
            }
        }
    }

    /// The next event, which must come within 10 s.
    async fn expect(&mut self) -> (String, Value) {
        tokio::time::timeout(Duration::from_secs(10), self.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream is still open")
    }
}

fn millis_of(rfc3339: &Value) -> i64 {
    let at = humantime::parse_rfc3339(rfc3339.as_str().unwrap()).unwrap();
    at.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test]
async fn history_is_get_history_as_protobuf_json() {
    let hub = spawn_hub().await;
    let mut c = hub.client().await;
    let json = ProtoJson::new().unwrap();
    let t0 = now_ms() - 3_600_000;
    run_job(&mut c, "h-1", "vm-http", t0, 60, JobStatus::Succeeded).await;
    let mut r = first("h-2", "vm-http");
    r.sampled_at = Some(ts(t0 + 100_000));
    c.report_progress(r).await.unwrap();
    c.report_progress(running("h-2", 2, t0 + 130_000, 3_000_000_000, 0))
        .await
        .unwrap();

    for id in ["h-1", "h-2"] {
        let body = get_ok(&hub, &format!("/api/v1/telemetry/history/{id}")).await;
        let grpc = c
            .get_history(GetHistoryRequest { job_id: id.into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(body, json.to_value(&grpc).unwrap(), "{id}");
    }

    // What a script reads, spelled out.
    let ended = get_ok(&hub, "/api/v1/telemetry/history/h-1").await;
    let (job, perf) = (&ended["job"], &ended["performance"]);
    assert_eq!(job["jobId"], "h-1");
    assert_eq!(job["machine"], "vm-http");
    assert_eq!(job["status"], "JOB_STATUS_SUCCEEDED");
    assert_eq!(job["jobType"], "JOB_TYPE_FULL");
    assert_eq!(job["bytesTransferred"], "6000000000");
    assert_eq!(job["errorMessage"], "", "defaults are written");
    assert_eq!(millis_of(&job["startedAt"]), t0);
    assert_eq!(millis_of(&job["endedAt"]), t0 + 60_000);
    assert_eq!(job["duration"], "60s");
    assert_eq!(perf["peakSpeedBps"], "100000000");
    assert_eq!(perf["averageSpeedBps"], "100000000");
    assert_eq!(perf["duration"], "60s");
    let points = perf["points"].as_array().unwrap();
    assert!(points.len() >= 2, "{perf}");
    assert_eq!(points[0]["elapsedSeconds"], 0.0);
    assert_eq!(points.last().unwrap()["elapsedSeconds"], 60.0);

    let live = get_ok(&hub, "/api/v1/telemetry/history/h-2").await;
    assert_eq!(live["job"]["status"], "JOB_STATUS_RUNNING");
    assert!(live["job"].get("endedAt").is_none(), "unset while running");
    assert_eq!(live["performance"]["points"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn lists_and_summaries_are_the_grpc_answers_as_json() {
    let hub = spawn_hub().await;
    let mut c = hub.client().await;
    let json = ProtoJson::new().unwrap();
    let t0 = now_ms() - 20 * 3_600_000;
    for (i, m) in ["alpha", "bravo", "rack 1/db"].iter().enumerate() {
        let id = format!("job-{i}");
        run_job(
            &mut c,
            &id,
            m,
            t0 + i as i64 * 1000,
            30,
            JobStatus::Succeeded,
        )
        .await;
    }
    run_job(
        &mut c,
        "alpha-2",
        "alpha",
        t0 + 3_600_000,
        60,
        JobStatus::Failed,
    )
    .await;
    let mut r = first("alpha-3", "alpha");
    r.sampled_at = Some(ts(t0 + 7_200_000));
    c.report_progress(r).await.unwrap();

    let page1 = get_ok(&hub, "/api/v1/machines?page_size=2").await;
    let grpc = c
        .list_machines(ListMachinesRequest {
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page1, json.to_value(&grpc).unwrap());
    assert_eq!(page1["machines"][0]["machine"]["name"], "alpha");
    assert_eq!(page1["machines"][0]["lastJob"]["jobId"], "alpha-3");
    assert_eq!(page1["machines"][0]["successRate"], 0.5);
    let token = page1["nextPageToken"].as_str().unwrap();
    assert!(!token.is_empty());
    let page2 = get_ok(
        &hub,
        &format!("/api/v1/machines?page_size=2&page_token={token}"),
    )
    .await;
    let grpc = c
        .list_machines(ListMachinesRequest {
            page_size: 2,
            page_token: token.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page2, json.to_value(&grpc).unwrap());
    assert_eq!(page2["machines"][0]["machine"]["name"], "rack 1/db");
    assert_eq!(page2["nextPageToken"], "");

    let jobs = get_ok(&hub, "/api/v1/machines/alpha/jobs?page_size=2").await;
    let grpc = c
        .list_jobs(ListJobsRequest {
            machine: "alpha".into(),
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(jobs, json.to_value(&grpc).unwrap());
    let ids: Vec<_> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job"]["jobId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alpha-3", "alpha-2"], "newest first");
    assert_eq!(
        jobs["jobs"][1]["performance"]["points"],
        json!([]),
        "lists carry no curves"
    );
    let token = jobs["nextPageToken"].as_str().unwrap();
    let rest = get_ok(
        &hub,
        &format!("/api/v1/machines/alpha/jobs?page_size=2&page_token={token}"),
    )
    .await;
    assert_eq!(rest["jobs"][0]["job"]["jobId"], "job-0");
    assert_eq!(rest["nextPageToken"], "");

    let every = get_ok(&hub, "/api/v1/jobs").await;
    let grpc = c
        .list_jobs(ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(every, json.to_value(&grpc).unwrap());
    assert_eq!(every["jobs"].as_array().unwrap().len(), 5);

    for (name, path) in [("alpha", "alpha"), ("rack 1/db", "rack%201%2Fdb")] {
        let summary = get_ok(&hub, &format!("/api/v1/machines/{path}/summary")).await;
        let grpc = c
            .get_machine_summary(GetMachineSummaryRequest {
                machine: name.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(summary, json.to_value(&grpc).unwrap(), "{name}");
        assert_eq!(summary["machine"]["name"], name);
    }
    let alpha = get_ok(&hub, "/api/v1/machines/alpha/summary").await;
    assert_eq!(alpha["totalJobs"], 3);
    assert_eq!(alpha["runningJobs"], 1);
    assert_eq!(alpha["failedJobs"], 1);
    assert_eq!(alpha["averageBytes"], "3000000000");
    assert_eq!(alpha["averageDuration"], "30s");
    assert_eq!(alpha["trend"][0]["status"], "JOB_STATUS_SUCCEEDED");
}

#[tokio::test]
async fn events_follow_a_job_to_its_record_and_the_stream_closes() {
    let hub = spawn_hub().await;
    let mut c = hub.client().await;
    let json = ProtoJson::new().unwrap();
    let t0 = now_ms() - 120_000;
    let mut r = first("sse-1", "vm-sse");
    r.sampled_at = Some(ts(t0));
    c.report_progress(r).await.unwrap();
    c.report_progress(running("sse-1", 2, t0 + 30_000, 3_000_000_000, 0))
        .await
        .unwrap();

    let mut events = Events::open(&hub, "/api/v1/jobs/sse-1/events?interval=1s").await;
    let mut grpc = c
        .watch_job(WatchJobRequest {
            job_id: "sse-1".into(),
            interval: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let (name, full) = events.expect().await;
    assert_eq!(name, "update");
    let grpc_first = grpc.next().await.unwrap().unwrap();
    assert_eq!(
        full,
        json.to_value(&grpc_first).unwrap(),
        "same first message"
    );
    assert_eq!(full["job"]["status"], "JOB_STATUS_RUNNING");
    let elapsed: Vec<_> = full["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["elapsedSeconds"].as_f64().unwrap())
        .collect();
    assert_eq!(elapsed, [0.0, 30.0], "every point so far");
    assert!(full.get("performance").is_none());

    // A silent agent still gets an update per interval, with no new points.
    let (name, idle) = events.expect().await;
    assert_eq!(name, "update");
    assert_eq!(idle["points"], json!([]));
    assert_eq!(idle["job"]["bytesTransferred"], "3000000000");

    c.report_progress(running("sse-1", 3, t0 + 33_000, 3_300_000_000, 0))
        .await
        .unwrap();
    let grown = loop {
        let (name, update) = events.expect().await;
        assert_eq!(name, "update");
        if update["points"] != json!([]) {
            break update;
        }
    };
    assert_eq!(grown["points"][0]["elapsedSeconds"], 33.0);
    assert_eq!(grown["job"]["bytesTransferred"], "3300000000");

    c.report_progress(ended(
        "sse-1",
        4,
        t0 + 40_000,
        4_000_000_000,
        JobStatus::Succeeded,
    ))
    .await
    .unwrap();
    let last = loop {
        let (name, event) = events.expect().await;
        if name == "end" {
            break event;
        }
        assert_eq!(name, "update");
    };
    assert_eq!(last["job"]["status"], "JOB_STATUS_SUCCEEDED");
    let history = c
        .get_history(GetHistoryRequest {
            job_id: "sse-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        last["performance"],
        json.to_value(&history.performance.unwrap()).unwrap(),
        "the end event carries the job's record"
    );
    assert_eq!(last["performance"]["bytesTransferred"], "4000000000");
    assert_eq!(last["performance"]["duration"], "40s");
    let closed = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("the stream closes after the end event");
    assert!(closed.is_none(), "nothing after the end event: {closed:?}");

    // Watching an ended job: the record alone, then the end of the stream.
    let mut late = Events::open(&hub, "/api/v1/jobs/sse-1/events").await;
    let (name, record) = late.expect().await;
    assert_eq!(name, "end");
    assert_eq!(record["performance"], last["performance"]);
    assert!(late.next().await.is_none());
}

#[tokio::test]
async fn failures_are_json_with_the_matching_http_status() {
    let hub = spawn_hub().await;
    let mut c = hub.client().await;
    let mut r = first("e-1", "vm-err");
    r.sampled_at = Some(ts(now_ms() - 10_000));
    c.report_progress(r).await.unwrap();

    let (status, body) = get_json(&hub, "/api/v1/telemetry/history/nope").await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"code": "NOT_FOUND", "message": "job nope not found"})
    );

    // (path, HTTP status, code, the message starts with)
    let cases = [
        (
            "/api/v1/telemetry/history/bad!id",
            400,
            "INVALID_ARGUMENT",
            "job_id:",
        ),
        (
            "/api/v1/telemetry/history/e-1?verbose=1",
            400,
            "INVALID_ARGUMENT",
            "query: unknown parameter verbose",
        ),
        (
            "/api/v1/machines?page_token=garbage",
            400,
            "INVALID_ARGUMENT",
            "page_token:",
        ),
        (
            "/api/v1/machines?page_size=lots",
            400,
            "INVALID_ARGUMENT",
            "page_size:",
        ),
        (
            "/api/v1/machines/vm-err/jobs?page_size=-3",
            400,
            "INVALID_ARGUMENT",
            "page_size:",
        ),
        (
            "/api/v1/machines/vm-err/jobs?page_token=bad",
            400,
            "INVALID_ARGUMENT",
            "page_token:",
        ),
        (
            "/api/v1/machines/ghost/jobs",
            404,
            "NOT_FOUND",
            "machine ghost not found",
        ),
        (
            "/api/v1/machines/ghost/summary",
            404,
            "NOT_FOUND",
            "machine ghost not found",
        ),
        (
            "/api/v1/jobs/nope/events",
            404,
            "NOT_FOUND",
            "job nope not found",
        ),
        (
            "/api/v1/jobs/e-1/events?interval=0s",
            400,
            "INVALID_ARGUMENT",
            "interval:",
        ),
        (
            "/api/v1/jobs/e-1/events?interval=soon",
            400,
            "INVALID_ARGUMENT",
            "interval:",
        ),
        (
            "/api/v1/no-such-thing",
            404,
            "NOT_FOUND",
            "no endpoint at /api/v1/no-such-thing",
        ),
    ];
    for (path, want_status, want_code, prefix) in cases {
        let (status, body) = get_json(&hub, path).await;
        assert_eq!(status, want_status, "{path}: {body}");
        assert_eq!(body["code"], want_code, "{path}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.starts_with(prefix), "{path}: {message}");
    }
    let wrong_method = request(&hub, "POST", "/api/v1/machines").await;
    assert_eq!(wrong_method.status(), 405);
}

#[tokio::test]
async fn api_routes_come_before_the_gui() {
    let ui = tempfile::tempdir().unwrap();
    std::fs::write(ui.path().join("index.html"), "<title>backwatch</title>").unwrap();
    let hub = spawn_hub_with(|c| c.ui_dir = Some(ui.path().to_path_buf())).await;
    let _ = hub.client().await;
    let page = request(&hub, "GET", "/machines/alpha").await;
    assert_eq!(page.status(), 200);
    let html = page.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&html).contains("<title>backwatch"));
    assert_eq!(
        get_ok(&hub, "/api/v1/machines").await,
        json!({"machines": [], "nextPageToken": ""})
    );
    let (status, body) = get_json(&hub, "/api/v2/machines").await;
    assert_eq!((status, &body["code"]), (404, &json!("NOT_FOUND")));
}

#[tokio::test]
async fn with_tokens_every_endpoint_needs_a_viewer_token() {
    let hub = spawn_hub_with(|c| {
        c.agent_tokens = vec!["agent-secret".parse().unwrap()];
        c.viewer_tokens = vec!["viewer-secret".parse().unwrap()];
    })
    .await;
    let paths = [
        "/api/v1/telemetry/history/t-1",
        "/api/v1/machines",
        "/api/v1/machines/vm-01/jobs",
        "/api/v1/machines/vm-01/summary",
        "/api/v1/jobs",
        "/api/v1/jobs/t-1/events",
    ];
    for path in paths {
        for (token, status, code) in [
            (None, 401, "UNAUTHENTICATED"),
            (Some("guess"), 401, "UNAUTHENTICATED"),
            (Some("agent-secret"), 403, "PERMISSION_DENIED"),
        ] {
            let reply = request_as(&hub, "GET", path, token).await;
            if status == 401 {
                assert_eq!(
                    reply.headers()["www-authenticate"],
                    "Bearer realm=\"backwatch\""
                );
            }
            let (got, body) = into_json(path, reply).await;
            assert_eq!(
                (got, body["code"].as_str()),
                (status, Some(code)),
                "{path} {token:?}"
            );
            assert!(!body["message"].as_str().unwrap().contains("secret"));
        }
        // A viewer gets through to the hub, which knows no such job or machine yet.
        let reply = request_as(&hub, "GET", path, Some("viewer-secret")).await;
        let (got, body) = into_json(path, reply).await;
        let want = match path {
            "/api/v1/machines" | "/api/v1/jobs" => 200,
            _ => 404,
        };
        assert_eq!(got, want, "{path}: {body}");
    }
}

#[tokio::test]
async fn event_streams_are_bounded_and_freed_when_clients_leave() {
    let hub = spawn_hub_with(|c| c.max_watchers = 1).await;
    let mut c = hub.client().await;
    let mut r = first("b-1", "vm-bound");
    r.sampled_at = Some(ts(now_ms() - 10_000));
    c.report_progress(r).await.unwrap();
    let path = "/api/v1/jobs/b-1/events?interval=1s";
    let mut open = Events::open(&hub, path).await;
    assert_eq!(open.expect().await.0, "update");
    let (status, body) = get_json(&hub, path).await;
    assert_eq!((status, &body["code"]), (429, &json!("RESOURCE_EXHAUSTED")));
    drop(open);
    // The hub notices the closed connection at its next update and frees the place.
    eventually(Duration::from_secs(10), || async {
        let reply = request(&hub, "GET", path).await;
        (reply.status() == 200).then_some(())
    })
    .await;
}

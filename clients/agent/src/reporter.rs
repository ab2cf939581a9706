//! The reporter an agent embeds: numbers reports, buffers them and delivers them in the
//! background, retrying with the same sequence until the hub has them.
//!
//! Error policy: UNAVAILABLE, DEADLINE_EXCEEDED and failures of the connection itself (refused,
//! reset, timed out: statuses the client made up rather than received) are retried with backoff,
//! forever, keeping the report's sequence so a retry of something the hub already took is
//! answered `duplicate = true`, which counts as delivered. Any other status is the hub refusing
//! the job's telemetry (INVALID_ARGUMENT, FAILED_PRECONDITION, UNAUTHENTICATED, …): delivery for
//! that job stops, the buffer is emptied, and every later call on the job returns the rejection.

use std::error::Error as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{watch, Notify};
use tonic::Code;

use crate::backoff::Backoff;
use crate::hub::{ConnectError, HubClient, HubOptions};
use crate::proto::{JobStatus, JobType, MachineInfo, ReportProgressRequest};
use crate::queue::ReportQueue;

/// Settings of a [`Reporter`].
#[derive(Debug, Clone)]
pub struct ReporterConfig {
    /// Where the hub is, TLS and token.
    pub hub: HubOptions,
    /// Reports buffered per job while the hub is unreachable before the oldest running ones are
    /// dropped. At one report every 3 s, 1,200 covers an hour of outage.
    pub buffer_capacity: usize,
    /// Wait between retries.
    pub backoff: Backoff,
    /// How long [`JobReporter::finish`] waits for the hub to take the terminal report.
    pub finish_timeout: Duration,
}

impl ReporterConfig {
    /// Defaults for a hub at `endpoint` (`http://127.0.0.1:50051`).
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self::for_hub(HubOptions::new(endpoint))
    }

    /// Defaults for a hub with these connection settings.
    pub fn for_hub(hub: HubOptions) -> Self {
        ReporterConfig {
            hub,
            buffer_capacity: 1200,
            backoff: Backoff::default(),
            finish_timeout: Duration::from_secs(60),
        }
    }

    /// Sends `authorization: Bearer <token>` with every report.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.hub.token = Some(token.into());
        self
    }

    /// Verifies the hub's certificate against this CA (PEM), optionally under another name.
    pub fn tls(mut self, ca_file: impl Into<std::path::PathBuf>, domain: Option<String>) -> Self {
        self.hub.ca_file = Some(ca_file.into());
        self.hub.tls_domain = domain;
        self
    }
}

/// What the hub needs to know about a job once: it creates the job from the first report.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// 1–128 characters of `A–Z a–z 0–9 . _ : -`, unique per job (e.g. `<machine>-<unix-ms>`).
    pub job_id: String,
    pub machine: String,
    pub job_type: JobType,
    /// Sent with the first report only.
    pub machine_info: Option<MachineInfo>,
}

/// One measurement of a running job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub phase: String,
    pub bytes_transferred: u64,
    /// 0 = unknown.
    pub total_bytes: u64,
    pub progress_percent: f64,
    /// Current speed; 0 lets the hub derive it.
    pub transfer_speed_bps: u64,
    /// When the values were measured; `None` means now, at the call. Set it only to replay
    /// measurements taken earlier.
    pub sampled_at: Option<SystemTime>,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded,
    /// With the error message shown to the operator.
    Failed(String),
    Cancelled,
}

/// The hub's answer to a delivered report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ack {
    pub sequence: u64,
    /// The job's status on the hub after the report.
    pub job_status: JobStatus,
    /// The hub already had this sequence (a retry after a lost answer).
    pub duplicate: bool,
}

/// Why telemetry for a job stopped or could not be confirmed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReportError {
    #[error("the hub rejected report {sequence}: {code:?}: {message}")]
    Rejected {
        sequence: u64,
        code: Code,
        message: String,
    },
    #[error("the job already has its terminal report")]
    Finished,
    #[error("the terminal report was not acknowledged within {0:?}; delivery continues in the background")]
    Timeout(Duration),
    #[error("the delivery task stopped unexpectedly")]
    Stopped,
}

/// A connection to the hub from which jobs are reported. Cheap to clone; one per agent.
#[derive(Clone)]
pub struct Reporter {
    client: HubClient,
    config: Arc<ReporterConfig>,
}

impl Reporter {
    /// Sets up the connection without contacting the hub: it may be down now.
    pub fn new(config: ReporterConfig) -> Result<Self, ConnectError> {
        let client = config.hub.client()?;
        Ok(Reporter {
            client,
            config: Arc::new(config),
        })
    }

    /// Starts reporting a job. Spawns its delivery task, so call it inside a tokio runtime.
    pub fn start_job(&self, job: JobSpec) -> JobReporter {
        let (acked, _) = watch::channel(Delivery::default());
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: ReportQueue::new(self.config.buffer_capacity),
                next_sequence: 1,
                terminal: None,
                closed: false,
            }),
            wake: Notify::new(),
            delivery: acked,
        });
        tokio::spawn(deliver(
            shared.clone(),
            self.client.clone(),
            self.config.backoff,
        ));
        JobReporter {
            shared,
            job,
            finish_timeout: self.config.finish_timeout,
        }
    }
}

/// Reports one job. [`report`](Self::report) never waits for the network; dropping the value
/// without [`finish`](Self::finish) still delivers what was recorded.
pub struct JobReporter {
    shared: Arc<Shared>,
    job: JobSpec,
    finish_timeout: Duration,
}

struct Shared {
    state: Mutex<State>,
    /// Rung when a report is queued or the job handle is dropped.
    wake: Notify,
    /// What the hub has taken so far, for `finish` and `flush` to wait on.
    delivery: watch::Sender<Delivery>,
}

struct State {
    queue: ReportQueue<ReportProgressRequest>,
    next_sequence: u64,
    /// Sequence of the terminal report once recorded.
    terminal: Option<u64>,
    /// The job handle is gone: the task ends once the queue is empty.
    closed: bool,
}

#[derive(Debug, Clone, Default)]
struct Delivery {
    last: Option<Ack>,
    rejected: Option<ReportError>,
    /// The task has ended (terminal delivered, rejected, or handle dropped and queue empty).
    done: bool,
}

impl JobReporter {
    /// The job this reporter reports.
    pub fn job(&self) -> &JobSpec {
        &self.job
    }

    /// Records a running report and returns its sequence at once; the background task delivers
    /// it. Errors only when the job is finished or the hub has rejected one of its reports.
    pub fn report(&self, progress: Progress) -> Result<u64, ReportError> {
        self.record(JobStatus::Running, String::new(), progress)
    }

    /// Records the terminal report and waits until the hub has it, at most the configured
    /// finish timeout.
    pub async fn finish(&self, outcome: Outcome, progress: Progress) -> Result<Ack, ReportError> {
        self.finish_within(outcome, progress, self.finish_timeout)
            .await
    }

    /// [`finish`](Self::finish) with an explicit timeout. On timeout delivery goes on in the
    /// background as long as the runtime lives.
    pub async fn finish_within(
        &self,
        outcome: Outcome,
        progress: Progress,
        timeout: Duration,
    ) -> Result<Ack, ReportError> {
        let (status, message) = match outcome {
            Outcome::Succeeded => (JobStatus::Succeeded, String::new()),
            Outcome::Failed(message) => (JobStatus::Failed, message),
            Outcome::Cancelled => (JobStatus::Cancelled, String::new()),
        };
        let sequence = self.record(status, message, progress)?;
        self.wait_for(sequence, timeout).await
    }

    /// Waits until every report recorded so far is delivered (or dropped), at most `timeout`.
    pub async fn flush(&self, timeout: Duration) -> Result<(), ReportError> {
        let last = self.shared.state.lock().unwrap().next_sequence - 1;
        if last == 0 {
            return Ok(());
        }
        self.wait_for(last, timeout).await.map(|_| ())
    }

    /// Reports buffered now, and reports dropped so far because the buffer was full.
    pub fn backlog(&self) -> (usize, u64) {
        let state = self.shared.state.lock().unwrap();
        (state.queue.len(), state.queue.dropped())
    }

    fn record(
        &self,
        status: JobStatus,
        error_message: String,
        p: Progress,
    ) -> Result<u64, ReportError> {
        if let Some(rejected) = self.shared.delivery.borrow().rejected.clone() {
            return Err(rejected);
        }
        let sampled_at = p.sampled_at.unwrap_or_else(SystemTime::now);
        let sequence = {
            let mut state = self.shared.state.lock().unwrap();
            if state.terminal.is_some() {
                return Err(ReportError::Finished);
            }
            let sequence = state.next_sequence;
            state.next_sequence += 1;
            let first = sequence == 1;
            let terminal = status != JobStatus::Running;
            let request = ReportProgressRequest {
                job_id: self.job.job_id.clone(),
                sequence,
                sampled_at: Some(sampled_at.into()),
                status: status as i32,
                phase: p.phase,
                bytes_transferred: p.bytes_transferred,
                total_bytes: p.total_bytes,
                progress_percent: p.progress_percent,
                transfer_speed_bps: p.transfer_speed_bps,
                error_message,
                // Sent every time so a hub that lost the job (or never got the first report)
                // can still create it.
                machine: self.job.machine.clone(),
                job_type: self.job.job_type as i32,
                machine_info: if first {
                    self.job.machine_info.clone()
                } else {
                    None
                },
            };
            if terminal {
                state.terminal = Some(sequence);
            }
            if let Some(dropped) = state.queue.push(sequence, first || terminal, request) {
                tracing::debug!(job_id = %self.job.job_id, dropped, "report buffer full, dropped a report");
            }
            sequence
        };
        self.shared.wake.notify_one();
        Ok(sequence)
    }

    async fn wait_for(&self, sequence: u64, timeout: Duration) -> Result<Ack, ReportError> {
        let mut delivery = self.shared.delivery.subscribe();
        let wait = delivery.wait_for(|d| {
            d.rejected.is_some() || d.done || d.last.is_some_and(|a| a.sequence >= sequence)
        });
        let result = match tokio::time::timeout(timeout, wait).await {
            Err(_) => Err(ReportError::Timeout(timeout)),
            Ok(Err(_)) => Err(ReportError::Stopped),
            Ok(Ok(d)) => match (&d.rejected, d.last) {
                (Some(rejected), _) => Err(rejected.clone()),
                (None, Some(ack)) if ack.sequence >= sequence => Ok(ack),
                // Ended with the report dropped from a full buffer or never acknowledged.
                _ => Err(ReportError::Stopped),
            },
        };
        result
    }
}

impl Drop for JobReporter {
    fn drop(&mut self) {
        self.shared.state.lock().unwrap().closed = true;
        self.shared.wake.notify_one();
    }
}

/// Whether a failed call may be retried with the same report: the hub did not take it, or we
/// cannot know (the connection failed, so the status was made up on our side).
pub fn is_retryable(status: &tonic::Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded) || status.source().is_some()
}

/// The job's delivery task: sends the oldest waiting report until the hub takes it, then the next.
async fn deliver(shared: Arc<Shared>, mut client: HubClient, backoff: Backoff) {
    let mut attempt = 0u32;
    loop {
        let next = {
            let state = shared.state.lock().unwrap();
            match state.queue.front() {
                Some((_, request)) => Some(request.clone()),
                None if state.closed || state.terminal.is_some() => break,
                None => None,
            }
        };
        let Some(request) = next else {
            shared.wake.notified().await;
            continue;
        };
        let sequence = request.sequence;
        match client.report_progress(request).await {
            Ok(response) => {
                if attempt > 0 {
                    tracing::info!(sequence, attempts = attempt + 1, "hub reachable again");
                }
                attempt = 0;
                let response = response.into_inner();
                shared.state.lock().unwrap().queue.acknowledge(sequence);
                let ack = Ack {
                    sequence,
                    job_status: response.job_status(),
                    duplicate: response.duplicate,
                };
                shared.delivery.send_modify(|d| d.last = Some(ack));
            }
            Err(status) if is_retryable(&status) => {
                let wait = backoff.delay(attempt, fastrand::f64());
                // Loud on the first failure and then ever more rarely: a certificate or
                // address mistake shows up in the agent's log without flooding it.
                if attempt == 0 || attempt.is_power_of_two() {
                    tracing::warn!(sequence, attempt, code = ?status.code(), message = status.message(), ?wait, "report not delivered, will retry");
                }
                attempt = attempt.saturating_add(1);
                tokio::time::sleep(wait).await;
            }
            Err(status) => {
                tracing::warn!(sequence, code = ?status.code(), message = status.message(), "hub rejected report; telemetry for this job stops");
                shared.state.lock().unwrap().queue.clear();
                let rejected = ReportError::Rejected {
                    sequence,
                    code: status.code(),
                    message: status.message().to_string(),
                };
                shared.delivery.send_modify(|d| d.rejected = Some(rejected));
                break;
            }
        }
    }
    shared.delivery.send_modify(|d| d.done = true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::telemetry_service_server::{TelemetryService, TelemetryServiceServer};
    use crate::proto::*;
    use std::net::SocketAddr;
    use tokio::sync::oneshot;
    use tonic::{Request, Response, Status};

    /// A hub stand-in: takes reports like the hub (duplicates by sequence), refuses with queued
    /// codes first, and records what it took and which token came with it.
    #[derive(Clone, Default)]
    struct FakeHub {
        taken: Arc<Mutex<Vec<(u64, JobStatus)>>>,
        refuse: Arc<Mutex<Vec<Code>>>,
        tokens: Arc<Mutex<Vec<String>>>,
    }

    #[tonic::async_trait]
    impl TelemetryService for FakeHub {
        async fn report_progress(
            &self,
            request: Request<ReportProgressRequest>,
        ) -> Result<Response<ReportProgressResponse>, Status> {
            if let Some(token) = request.metadata().get("authorization") {
                self.tokens
                    .lock()
                    .unwrap()
                    .push(token.to_str().unwrap().to_string());
            }
            if let Some(code) = self.refuse.lock().unwrap().pop() {
                return Err(Status::new(code, "refused by the test"));
            }
            let r = request.into_inner();
            let mut taken = self.taken.lock().unwrap();
            let duplicate = taken.last().is_some_and(|(s, _)| *s >= r.sequence);
            if !duplicate {
                taken.push((r.sequence, r.status()));
            }
            Ok(Response::new(ReportProgressResponse {
                duplicate,
                job_status: r.status,
            }))
        }
        async fn get_history(
            &self,
            _: Request<GetHistoryRequest>,
        ) -> Result<Response<GetHistoryResponse>, Status> {
            Err(Status::unimplemented(""))
        }
        type WatchJobStream = tokio_stream::Empty<Result<WatchJobResponse, Status>>;
        async fn watch_job(
            &self,
            _: Request<WatchJobRequest>,
        ) -> Result<Response<Self::WatchJobStream>, Status> {
            Err(Status::unimplemented(""))
        }
        async fn list_machines(
            &self,
            _: Request<ListMachinesRequest>,
        ) -> Result<Response<ListMachinesResponse>, Status> {
            Err(Status::unimplemented(""))
        }
        async fn list_jobs(
            &self,
            _: Request<ListJobsRequest>,
        ) -> Result<Response<ListJobsResponse>, Status> {
            Err(Status::unimplemented(""))
        }
        async fn get_machine_summary(
            &self,
            _: Request<GetMachineSummaryRequest>,
        ) -> Result<Response<GetMachineSummaryResponse>, Status> {
            Err(Status::unimplemented(""))
        }
    }

    /// Serves `hub` on `addr` until the returned sender is dropped or fired.
    async fn serve(hub: FakeHub, addr: SocketAddr) -> oneshot::Sender<()> {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TelemetryServiceServer::new(hub))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    async {
                        let _ = stopped.await;
                    },
                ),
        );
        stop
    }

    fn free_addr() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    fn reporter(addr: SocketAddr, capacity: usize) -> Reporter {
        let mut config = ReporterConfig::new(format!("http://{addr}")).token("s3cret");
        config.buffer_capacity = capacity;
        config.backoff = Backoff {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(50),
            ..Backoff::default()
        };
        config.finish_timeout = Duration::from_secs(10);
        Reporter::new(config).unwrap()
    }

    fn job(reporter: &Reporter) -> JobReporter {
        reporter.start_job(JobSpec {
            job_id: "db-01-1".into(),
            machine: "db-01".into(),
            job_type: JobType::Full,
            machine_info: None,
        })
    }

    fn at(bytes: u64) -> Progress {
        Progress {
            phase: "transfer".into(),
            bytes_transferred: bytes,
            ..Progress::default()
        }
    }

    #[tokio::test]
    async fn retries_refusals_that_are_transient_with_the_same_sequence() {
        let (hub, addr) = (FakeHub::default(), free_addr());
        hub.refuse.lock().unwrap().extend([
            Code::DeadlineExceeded,
            Code::Unavailable,
            Code::Unavailable,
        ]);
        let _server = serve(hub.clone(), addr).await;
        let job = job(&reporter(addr, 100));
        for b in 1..=3 {
            job.report(at(b)).unwrap();
        }
        let ack = job.finish(Outcome::Succeeded, at(4)).await.unwrap();
        assert_eq!(ack.sequence, 4);
        let taken = hub.taken.lock().unwrap().clone();
        assert_eq!(
            taken,
            [
                (1, JobStatus::Running),
                (2, JobStatus::Running),
                (3, JobStatus::Running),
                (4, JobStatus::Succeeded)
            ]
        );
        assert!(hub
            .tokens
            .lock()
            .unwrap()
            .iter()
            .all(|t| t == "Bearer s3cret"));
    }

    #[tokio::test]
    async fn buffers_while_the_hub_is_down_and_delivers_in_order_when_it_returns() {
        let (hub, addr) = (FakeHub::default(), free_addr());
        let job = job(&reporter(addr, 5));
        for b in 1..=20 {
            job.report(at(b)).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _server = serve(hub.clone(), addr).await;
        let ack = job
            .finish(Outcome::Failed("disk gone".into()), at(21))
            .await
            .unwrap();
        assert_eq!(ack.sequence, 21);
        let sequences: Vec<u64> = hub.taken.lock().unwrap().iter().map(|(s, _)| *s).collect();
        // The first report (creates the job) and the terminal one survive; the oldest running
        // reports made room for the newest.
        assert_eq!(sequences.first(), Some(&1));
        assert_eq!(sequences.last(), Some(&21));
        assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
        assert!(
            sequences.contains(&20) && !sequences.contains(&5),
            "{sequences:?}"
        );
    }

    #[tokio::test]
    async fn survives_a_hub_restart_mid_job_without_losing_the_terminal_report() {
        let (hub, addr) = (FakeHub::default(), free_addr());
        let server = serve(hub.clone(), addr).await;
        let job = job(&reporter(addr, 100));
        for b in 1..=5 {
            job.report(at(b)).unwrap();
        }
        job.flush(Duration::from_secs(5)).await.unwrap();
        let _ = server.send(());
        tokio::time::sleep(Duration::from_millis(100)).await;
        for b in 6..=10 {
            job.report(at(b)).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _server = serve(hub.clone(), addr).await;
        job.finish(Outcome::Succeeded, at(11)).await.unwrap();
        let sequences: Vec<u64> = hub.taken.lock().unwrap().iter().map(|(s, _)| *s).collect();
        assert_eq!(sequences, (1..=11).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_rejection_stops_the_job_and_is_returned_to_the_caller() {
        let (hub, addr) = (FakeHub::default(), free_addr());
        hub.refuse.lock().unwrap().push(Code::InvalidArgument);
        let _server = serve(hub.clone(), addr).await;
        let job = job(&reporter(addr, 100));
        job.report(at(1)).unwrap();
        let err = job.finish(Outcome::Succeeded, at(2)).await.unwrap_err();
        assert!(
            matches!(
                err,
                ReportError::Rejected {
                    sequence: 1,
                    code: Code::InvalidArgument,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(job.report(at(3)).unwrap_err(), err);
        assert!(hub.taken.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn finish_gives_up_waiting_after_its_timeout_and_refuses_later_reports() {
        let job = job(&reporter(free_addr(), 100));
        job.report(at(1)).unwrap();
        let err = job
            .finish_within(Outcome::Cancelled, at(2), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert_eq!(err, ReportError::Timeout(Duration::from_millis(200)));
        assert_eq!(job.report(at(3)), Err(ReportError::Finished));
        assert_eq!(job.backlog().0, 2);
    }

    #[tokio::test]
    async fn reports_pile_up_in_the_bounded_buffer_while_the_hub_is_down() {
        let job = job(&reporter(free_addr(), 10));
        for b in 1..=10_000 {
            job.report(at(b)).unwrap();
        }
        assert_eq!(job.backlog(), (10, 9_990));
    }

    #[test]
    fn transport_failures_and_unavailable_are_retried_other_codes_are_not() {
        assert!(is_retryable(&tonic::Status::unavailable("down")));
        assert!(is_retryable(&tonic::Status::deadline_exceeded("slow")));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(is_retryable(&tonic::Status::from_error(Box::new(io))));
        assert!(!is_retryable(&tonic::Status::invalid_argument("bad")));
        assert!(!is_retryable(&tonic::Status::failed_precondition("ended")));
        assert!(!is_retryable(&tonic::Status::unauthenticated("token")));
    }
}

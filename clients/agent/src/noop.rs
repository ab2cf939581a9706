//! A `TelemetryService` whose `ReportProgress` answers at once: the benchmark's baseline for
//! what gRPC itself costs. Every other call is UNIMPLEMENTED.

use std::future::Future;

use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use crate::proto::telemetry_service_server::{TelemetryService, TelemetryServiceServer};
use crate::proto::*;

/// Takes every report, stores nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopService;

#[tonic::async_trait]
impl TelemetryService for NoopService {
    async fn report_progress(
        &self,
        _: Request<ReportProgressRequest>,
    ) -> Result<Response<ReportProgressResponse>, Status> {
        Ok(Response::new(ReportProgressResponse {
            duplicate: false,
            job_status: JobStatus::Running as i32,
        }))
    }

    async fn get_history(
        &self,
        _: Request<GetHistoryRequest>,
    ) -> Result<Response<GetHistoryResponse>, Status> {
        Err(Status::unimplemented("no-op server"))
    }

    type WatchJobStream = tokio_stream::Empty<Result<WatchJobResponse, Status>>;

    async fn watch_job(
        &self,
        _: Request<WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        Err(Status::unimplemented("no-op server"))
    }

    async fn list_machines(
        &self,
        _: Request<ListMachinesRequest>,
    ) -> Result<Response<ListMachinesResponse>, Status> {
        Err(Status::unimplemented("no-op server"))
    }

    async fn list_jobs(
        &self,
        _: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        Err(Status::unimplemented("no-op server"))
    }

    async fn get_machine_summary(
        &self,
        _: Request<GetMachineSummaryRequest>,
    ) -> Result<Response<GetMachineSummaryResponse>, Status> {
        Err(Status::unimplemented("no-op server"))
    }
}

/// Serves the no-op service on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .max_concurrent_streams(256)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_max_pending_accept_reset_streams(Some(10_000))
        .add_service(TelemetryServiceServer::new(NoopService))
        .serve_with_incoming_shutdown(
            // Like the hub: no Nagle delay (the builder's tcp_nodelay applies only to a
            // listener tonic binds itself).
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}

//! `backwatch.v1.TelemetryService` over tonic: unpacks requests, calls the hub, packs answers.

use crate::hub::{Hub, WatchStream};
use crate::proto;
use crate::proto::telemetry_service_server::TelemetryService;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

/// The gRPC face of the hub.
#[derive(Clone)]
pub struct Service {
    hub: Arc<Hub>,
}

impl Service {
    pub fn new(hub: Arc<Hub>) -> Self {
        Service { hub }
    }
}

type StatusStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<proto::WatchJobResponse, Status>> + Send>,
>;

#[tonic::async_trait]
impl TelemetryService for Service {
    async fn report_progress(
        &self,
        request: Request<proto::ReportProgressRequest>,
    ) -> Result<Response<proto::ReportProgressResponse>, Status> {
        let ack = self.hub.report(request.into_inner()).await?;
        crate::metrics::report_acknowledged(ack.duplicate);
        Ok(Response::new(ack))
    }

    async fn get_history(
        &self,
        request: Request<proto::GetHistoryRequest>,
    ) -> Result<Response<proto::GetHistoryResponse>, Status> {
        Ok(Response::new(
            self.hub.history(&request.get_ref().job_id).await?,
        ))
    }

    type WatchJobStream = StatusStream;

    async fn watch_job(
        &self,
        request: Request<proto::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let req = request.into_inner();
        let interval = match req.interval {
            None => None,
            Some(d) if d.seconds < 0 || d.nanos < 0 => {
                return Err(Status::invalid_argument("interval: must be from 1s to 1h"))
            }
            Some(d) => Some(Duration::new(
                d.seconds.min(i64::from(u32::MAX)) as u64,
                d.nanos.min(999_999_999) as u32,
            )),
        };
        let stream: WatchStream = self.hub.watch(&req.job_id, interval).await?;
        Ok(Response::new(Box::pin(
            stream.map(|r| r.map_err(Status::from)),
        )))
    }

    async fn list_machines(
        &self,
        request: Request<proto::ListMachinesRequest>,
    ) -> Result<Response<proto::ListMachinesResponse>, Status> {
        let req = request.get_ref();
        Ok(Response::new(
            self.hub
                .list_machines(req.page_size, &req.page_token)
                .await?,
        ))
    }

    async fn list_jobs(
        &self,
        request: Request<proto::ListJobsRequest>,
    ) -> Result<Response<proto::ListJobsResponse>, Status> {
        let req = request.get_ref();
        Ok(Response::new(
            self.hub
                .list_jobs(&req.machine, req.page_size, &req.page_token)
                .await?,
        ))
    }

    async fn get_machine_summary(
        &self,
        request: Request<proto::GetMachineSummaryRequest>,
    ) -> Result<Response<proto::GetMachineSummaryResponse>, Status> {
        Ok(Response::new(
            self.hub.machine_summary(&request.get_ref().machine).await?,
        ))
    }
}

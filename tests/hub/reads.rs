//! Reads: history, machine and job lists with paging, machine summaries, NOT_FOUND.

use crate::common::*;
use backwatch::proto::{
    GetHistoryRequest, GetMachineSummaryRequest, JobStatus, ListJobsRequest, ListMachinesRequest,
};
use tonic::Code;

#[tokio::test]
async fn lists_page_through_machines_and_jobs_newest_first() {
    let hub = spawn_hub().await;
    let mut c = hub.client().await;
    let t0 = now_ms() - 20 * 3_600_000;
    for (i, m) in ["alpha", "bravo", "charlie"].iter().enumerate() {
        run_job(
            &mut c,
            &format!("{m}-1"),
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

    let p1 = c
        .list_machines(ListMachinesRequest {
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = p1
        .machines
        .iter()
        .map(|m| m.machine.as_ref().unwrap().name.clone())
        .collect();
    assert_eq!(names, ["alpha", "bravo"]);
    let alpha = &p1.machines[0];
    assert_eq!(
        alpha.last_job.as_ref().unwrap().job_id,
        "alpha-3",
        "the newest job, running"
    );
    assert_eq!(alpha.success_rate, 0.5);
    assert_eq!(alpha.total_jobs, 3);
    assert_eq!(
        alpha
            .machine
            .as_ref()
            .unwrap()
            .info
            .as_ref()
            .unwrap()
            .cpu_cores,
        2
    );
    let p2 = c
        .list_machines(ListMachinesRequest {
            page_size: 2,
            page_token: p1.next_page_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p2.machines.len(), 1);
    assert_eq!(p2.machines[0].machine.as_ref().unwrap().name, "charlie");
    assert!(p2.next_page_token.is_empty());

    let j1 = c
        .list_jobs(ListJobsRequest {
            machine: "alpha".into(),
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = j1
        .jobs
        .iter()
        .map(|j| j.job.as_ref().unwrap().job_id.clone())
        .collect();
    assert_eq!(ids, ["alpha-3", "alpha-2"]);
    assert!(j1.jobs[0].performance.is_none(), "running: no record yet");
    let rec = j1.jobs[1].performance.as_ref().unwrap();
    assert_eq!(rec.duration.as_ref().unwrap().seconds, 60);
    assert!(rec.points.is_empty(), "lists carry metrics without curves");
    let j2 = c
        .list_jobs(ListJobsRequest {
            machine: "alpha".into(),
            page_size: 2,
            page_token: j1.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(j2.jobs.len(), 1);
    assert_eq!(j2.jobs[0].job.as_ref().unwrap().job_id, "alpha-1");
    let all = c
        .list_jobs(ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.jobs.len(), 5);

    let (code, msg) = failure(
        c.list_jobs(ListJobsRequest {
            page_token: "garbage!".into(),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.starts_with("page_token:"), "{msg}");
    let (code, _) = failure(
        c.list_machines(ListMachinesRequest {
            page_size: 1,
            page_token: "bm90LWEtdG9rZW4".into(),
        })
        .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    assert_eq!(
        failure(
            c.list_jobs(ListJobsRequest {
                machine: "nobody".into(),
                ..Default::default()
            })
            .await
        )
        .0,
        Code::NotFound
    );
}

#[tokio::test]
async fn machine_summary_counts_averages_and_trends() {
    let hub = spawn_hub().await;
    let mut c = hub.client().await;
    let t0 = now_ms() - 20 * 3_600_000;
    run_job(&mut c, "s-1", "vm-s", t0, 30, JobStatus::Succeeded).await;
    run_job(
        &mut c,
        "s-2",
        "vm-s",
        t0 + 3_600_000,
        90,
        JobStatus::Succeeded,
    )
    .await;
    run_job(
        &mut c,
        "s-3",
        "vm-s",
        t0 + 7_200_000,
        12,
        JobStatus::Cancelled,
    )
    .await;
    let s = c
        .get_machine_summary(GetMachineSummaryRequest {
            machine: "vm-s".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            s.total_jobs,
            s.succeeded_jobs,
            s.cancelled_jobs,
            s.failed_jobs
        ),
        (3, 2, 1, 0)
    );
    assert!((s.success_rate - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(s.average_bytes, 6_000_000_000, "(3 GB + 9 GB) / 2");
    assert_eq!(s.average_duration.unwrap().seconds, 60);
    assert_eq!(s.average_speed_bps, 100_000_000);
    let trend: Vec<_> = s.trend.iter().map(|t| t.job_id.as_str()).collect();
    assert_eq!(trend, ["s-1", "s-2", "s-3"], "oldest first");
    assert_eq!(s.machine.unwrap().info.unwrap().os, "Debian 12");
    assert_eq!(
        failure(
            c.get_machine_summary(GetMachineSummaryRequest {
                machine: "nobody".into()
            })
            .await
        )
        .0,
        Code::NotFound
    );
    let (code, msg) = failure(
        c.get_machine_summary(GetMachineSummaryRequest {
            machine: String::new(),
        })
        .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.starts_with("machine:"));
}

#[tokio::test]
async fn unknown_jobs_are_not_found() {
    let hub = spawn_hub().await;
    let mut c = hub.client().await;
    let (code, msg) = failure(
        c.get_history(GetHistoryRequest {
            job_id: "nope".into(),
        })
        .await,
    );
    assert_eq!(code, Code::NotFound);
    assert!(msg.contains("nope"));
    let (code, _) = failure(
        c.get_history(GetHistoryRequest {
            job_id: "no/pe".into(),
        })
        .await,
    );
    assert_eq!(code, Code::InvalidArgument);
}

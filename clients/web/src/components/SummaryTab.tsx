import { useState } from "react";
import { telemetry, type Telemetry } from "../api";
import { JobStatus, type GetMachineSummaryResponse } from "../gen/backwatch/v1/telemetry_pb";
import { useQuery, type QueryState } from "../hooks";
import {
  durationSeconds,
  formatBytes,
  formatDate,
  formatDuration,
  formatProgress,
  formatRate,
  formatSpeed,
  formatTime,
  jobTypeLabel,
  tsToDate,
} from "../format";
import { StatusBadge } from "./StatusBadge";
import { Empty, ErrorState, Loading } from "./States";

export const HISTORY_PAGE_SIZE = 15;
const HISTORY_POLL_MS = 10_000;

type ListJobsResponse = Awaited<ReturnType<Telemetry["listJobs"]>>;

interface Props {
  machine: string;
  summary: QueryState<GetMachineSummaryResponse>;
  onOpenJob: (jobId: string) => void;
}

export function SummaryTab({ machine, summary, onOpenJob }: Props) {
  const s = summary.data;
  return (
    <div className="summary-tab">
      {!s && summary.loading ? <Loading label="Loading summary…" /> : null}
      {!s && summary.error ? <ErrorState error={summary.error} what="the machine summary" onRetry={summary.reload} /> : null}
      {s ? (
        <div className="kpis" data-testid="kpis">
          <Kpi
            label="Total backups"
            value={s.totalJobs.toLocaleString("en-US")}
            testId="kpi-total"
            sub={`${s.succeededJobs} succeeded · ${s.failedJobs} failed${s.runningJobs ? ` · ${s.runningJobs} running` : ""}`}
          />
          <Kpi
            label="Success rate"
            value={endedCount(s) ? formatRate(s.successRate) : "—"}
            testId="kpi-success"
            sub={endedCount(s) ? `${s.succeededJobs} of ${endedCount(s)} ended jobs` : "no ended jobs yet"}
          />
          <Kpi
            label="Average size"
            value={s.succeededJobs ? formatBytes(s.averageBytes) : "—"}
            testId="kpi-size"
            sub="over succeeded jobs"
          />
          <Kpi
            label="Average duration"
            value={s.succeededJobs ? formatDuration(durationSeconds(s.averageDuration)) : "—"}
            testId="kpi-duration"
            sub={s.succeededJobs ? `at ${formatSpeed(s.averageSpeedBps)} on average` : "over succeeded jobs"}
          />
        </div>
      ) : null}
      <History machine={machine} onOpenJob={onOpenJob} />
    </div>
  );
}

export function endedCount(s: GetMachineSummaryResponse): number {
  return s.succeededJobs + s.failedJobs + s.cancelledJobs + s.abandonedJobs;
}

function Kpi({ label, value, sub, testId }: { label: string; value: string; sub?: string; testId: string }) {
  return (
    <div className="kpi" data-testid={testId}>
      <div className="kpi-label">{label}</div>
      <div className="kpi-value">{value}</div>
      {sub ? <div className="kpi-sub">{sub}</div> : null}
    </div>
  );
}

function History({ machine, onOpenJob }: { machine: string; onOpenJob: (jobId: string) => void }) {
  // Page tokens of the pages seen so far; tokens[i] fetches page i.
  const [tokens, setTokens] = useState<string[]>([""]);
  const [page, setPage] = useState(0);
  const token = tokens[page] ?? "";
  const q = useQuery<ListJobsResponse>(
    (signal) => telemetry().listJobs({ machine, pageSize: HISTORY_PAGE_SIZE, pageToken: token }, { signal }),
    ["jobs", machine, token],
    { intervalMs: HISTORY_POLL_MS },
  );
  const jobs = q.data?.jobs;
  const next = q.data?.nextPageToken;

  const goNext = () => {
    if (!next) return;
    setTokens((t) => [...t.slice(0, page + 1), next]);
    setPage(page + 1);
  };

  return (
    <section className="history" aria-labelledby="history-title">
      <div className="section-header">
        <h3 id="history-title">Backup history</h3>
        <div className="pager">
          <span className="muted">Page {page + 1}</span>
          <button type="button" className="button small" disabled={page === 0} onClick={() => setPage(page - 1)}>
            Newer
          </button>
          <button type="button" className="button small" disabled={!next} onClick={goNext}>
            Older
          </button>
        </div>
      </div>
      {!jobs && q.loading ? <Loading label="Loading jobs…" /> : null}
      {!jobs && q.error ? <ErrorState error={q.error} what="the backup history" onRetry={q.reload} /> : null}
      {jobs && jobs.length === 0 ? <Empty>No backups recorded for this machine yet.</Empty> : null}
      {jobs && jobs.length > 0 ? (
        <div className="table-wrap history-wrap">
          <table className="table dense" data-testid="history-table">
            <thead>
              <tr>
                <th scope="col">Type</th>
                <th scope="col" className="num">
                  Size
                </th>
                <th scope="col" className="num">
                  Duration
                </th>
                <th scope="col" className="num">
                  Avg speed
                </th>
                <th scope="col">Status</th>
                <th scope="col">Date</th>
              </tr>
            </thead>
            <tbody>
              {jobs.map(({ job, performance }) => {
                if (!job) return null;
                const started = tsToDate(job.startedAt);
                const running = job.status === JobStatus.RUNNING;
                const dur = performance?.duration ? durationSeconds(performance.duration) : durationSeconds(job.duration);
                const avg = performance ? performance.averageSpeedBps : dur > 0 ? Number(job.bytesTransferred) / dur : 0;
                return (
                  <tr
                    key={job.jobId}
                    className="clickable"
                    data-job={job.jobId}
                    onClick={() => onOpenJob(job.jobId)}
                    title={job.errorMessage || `Job ${job.jobId}: open its performance`}
                  >
                    <td>
                      <button
                        type="button"
                        className="row-link"
                        onClick={(e) => {
                          e.stopPropagation();
                          onOpenJob(job.jobId);
                        }}
                        aria-label={`${jobTypeLabel(job.jobType)} backup of ${formatDate(started)} ${formatTime(started)}: show performance`}
                      >
                        {jobTypeLabel(job.jobType)}
                      </button>
                    </td>
                    <td className="num">{formatBytes(performance ? performance.bytesTransferred : job.bytesTransferred)}</td>
                    <td className="num">{formatDuration(dur)}</td>
                    <td className="num">{formatSpeed(avg)}</td>
                    <td>
                      <StatusBadge status={job.status} suffix={running ? formatProgress(job.progressPercent) : undefined} />
                      {job.errorMessage ? <span className="error-text"> {job.errorMessage}</span> : null}
                    </td>
                    <td className="nowrap">
                      {formatDate(started)} <span className="muted">{formatTime(started)}</span>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      ) : null}
    </section>
  );
}

import { useEffect, useMemo, useState } from "react";
import { telemetry, type Telemetry } from "../api";
import { JobStatus, type Job, type PerformanceRecord, type SpeedPoint } from "../gen/backwatch/v1/telemetry_pb";
import { useNow, useQuery } from "../hooks";
import { useJobWatch } from "../watch";
import { speedFigures, timeAxisFor, toChartRows } from "../chartData";
import {
  bpsToMBps,
  formatBytes,
  formatDate,
  formatDateTime,
  formatDuration,
  formatProgress,
  formatRelative,
  formatSpeed,
  formatTime,
  jobTypeLabel,
  statusLabel,
  tsToDate,
} from "../format";
import { SpeedChart } from "./SpeedChart";
import { StatusBadge } from "./StatusBadge";
import { Empty, ErrorState, Loading } from "./States";

const JOB_LIST_SIZE = 50;
const JOB_LIST_POLL_MS = 10_000;

type ListJobsResponse = Awaited<ReturnType<Telemetry["listJobs"]>>;

interface Props {
  machine: string;
  jobId?: string;
  onSelectJob: (jobId: string) => void;
}

export function PerformanceTab({ machine, jobId, onSelectJob }: Props) {
  const list = useQuery<ListJobsResponse>(
    (signal) => telemetry().listJobs({ machine, pageSize: JOB_LIST_SIZE }, { signal }),
    ["perf-jobs", machine],
    { intervalMs: JOB_LIST_POLL_MS },
  );
  const jobs = useMemo(() => (list.data?.jobs ?? []).flatMap((j) => (j.job ? [j.job] : [])), [list.data]);
  // Default: the job in the URL, else a running job, else the newest.
  const selected =
    jobId ?? (jobs.find((j) => j.status === JobStatus.RUNNING) ?? jobs[0])?.jobId;
  const listed = jobs.find((j) => j.jobId === selected);
  // Put the job shown by default into the URL, so a link reopens this very job.
  useEffect(() => {
    if (!jobId && selected) onSelectJob(selected);
  }, [jobId, selected, onSelectJob]);

  if (!selected) {
    if (list.loading && !list.data) return <Loading label="Loading jobs…" />;
    if (list.error && !list.data) return <ErrorState error={list.error} what="jobs" onRetry={list.reload} />;
    return <Empty>No backups recorded for this machine yet.</Empty>;
  }
  return (
    <JobPerformance
      key={selected}
      jobId={selected}
      listed={listed}
      jobs={jobs}
      onSelectJob={onSelectJob}
    />
  );
}

function JobPerformance({
  jobId,
  listed,
  jobs,
  onSelectJob,
}: {
  jobId: string;
  listed?: Job;
  jobs: Job[];
  onSelectJob: (jobId: string) => void;
}) {
  // A job the list does not hold (an old one from a link) or one we have not classified yet:
  // GetHistory tells whether it runs. A job seen running stays in watch mode: the stream's
  // last message carries the final record.
  const [watching, setWatching] = useState(listed?.status === JobStatus.RUNNING);
  const history = useQuery(
    (signal) => telemetry().getHistory({ jobId }, { signal }),
    ["history", jobId],
    { enabled: !watching },
  );
  useEffect(() => {
    if (!watching && (listed?.status === JobStatus.RUNNING || history.data?.job?.status === JobStatus.RUNNING)) {
      setWatching(true);
    }
  }, [watching, listed?.status, history.data?.job?.status]);
  const watch = useJobWatch(jobId, watching);

  let job: Job | undefined;
  let points: SpeedPoint[] = [];
  let record: PerformanceRecord | undefined;
  if (watching) {
    job = watch.job ?? listed;
    record = watch.record;
    points = record && record.points.length ? record.points : watch.points;
  } else {
    job = history.data?.job ?? listed;
    record = history.data?.performance;
    points = record?.points ?? [];
  }
  const running = watching && watch.status !== "ended" && !watch.record && (!job || job.status === JobStatus.RUNNING);

  const options = useMemo(() => {
    const all = [...jobs];
    if (job && !all.some((j) => j.jobId === job!.jobId)) all.push(job);
    return all;
  }, [jobs, job]);

  return (
    <div className="perf-tab">
      <div className="perf-toolbar">
        <label className="field">
          <span className="field-label">Job</span>
          <select
            value={jobId}
            onChange={(e) => onSelectJob(e.target.value)}
            data-testid="job-select"
            className="job-select"
          >
            {options.map((j) => (
              <option key={j.jobId} value={j.jobId}>
                {jobOptionLabel(j)}
              </option>
            ))}
          </select>
        </label>
        {job ? (
          <div className="perf-jobmeta">
            <StatusBadge status={job.status} />
            {running ? <LiveIndicator status={watch.status} lastMessageAt={watch.lastMessageAt} /> : null}
            {record && watching ? <span className="pill">Final record</span> : null}
          </div>
        ) : null}
      </div>

      {content()}
    </div>
  );

  function content() {
    if (watching) {
      if (watch.status === "error") return <ErrorState error={watch.error} what="the live job" />;
      if (!watch.job && !listed) return <Loading label="Connecting to the live job…" />;
    } else {
      if (!history.data && history.loading) return <Loading label="Loading performance…" />;
      if (!history.data && history.error) return <ErrorState error={history.error} what="the job" onRetry={history.reload} />;
    }
    const figures = speedFigures(points, record, job);
    const maxT = points.length ? points[points.length - 1].elapsedSeconds : 0;
    const axis = timeAxisFor(Math.max(maxT, figures.durationSeconds));
    const rows = toChartRows(points, axis);
    return (
      <>
        <div className="figures" data-testid="perf-figures">
          <Figure label="Peak" value={formatSpeed(figures.peakBps)} testId="fig-peak" />
          <Figure label="Average" value={formatSpeed(figures.averageBps)} testId="fig-average" />
          <Figure label="Minimum" value={formatSpeed(figures.minBps)} testId="fig-min" />
          <Figure label="Duration" value={formatDuration(figures.durationSeconds)} testId="fig-duration" />
          <Figure
            label="Transferred"
            value={formatBytes(figures.bytes)}
            sub={job && Number(job.totalBytes) > 0 ? `of ${formatBytes(job.totalBytes)}` : undefined}
            testId="fig-bytes"
          />
        </div>
        {running && job ? <LiveStrip job={job} /> : null}
        {job?.errorMessage ? (
          <div className="job-error" role="note">
            <strong>{statusLabel(job.status)}:</strong> {job.errorMessage}
          </div>
        ) : null}
        {rows.length > 0 ? (
          <SpeedChart
            rows={rows}
            axis={axis}
            averageMBps={bpsToMBps(figures.averageBps)}
            startedAt={tsToDate(job?.startedAt)}
            final={!!record && !running}
            live={running}
          />
        ) : (
          <div className="chart chart-empty" data-testid="speed-chart" data-point-count={0} data-final="false">
            <Empty>{running ? "Waiting for the first speed samples…" : "No speed curve was recorded for this job."}</Empty>
          </div>
        )}
        {record && !running ? (
          <p className="footnote muted">
            Record built from {record.snapshotCount} snapshots, curve of {record.points.length} points. Peak and minimum
            cover every report.
          </p>
        ) : null}
      </>
    );
  }
}

export function jobOptionLabel(j: Job): string {
  const d = tsToDate(j.startedAt);
  const live = j.status === JobStatus.RUNNING ? "● live · " : "";
  return `${live}${formatDate(d)} ${formatTime(d)} · ${jobTypeLabel(j.jobType)} · ${statusLabel(j.status)}`;
}

function Figure({ label, value, sub, testId }: { label: string; value: string; sub?: string; testId: string }) {
  return (
    <div className="figure" data-testid={testId}>
      <div className="figure-label">{label}</div>
      <div className="figure-value">
        {value}
        {sub ? <span className="figure-sub"> {sub}</span> : null}
      </div>
    </div>
  );
}

function LiveIndicator({ status, lastMessageAt }: { status: string; lastMessageAt?: Date }) {
  const now = useNow(1000);
  const ago = lastMessageAt ? Math.max(0, Math.round((now.getTime() - lastMessageAt.getTime()) / 1000)) : undefined;
  const text =
    status === "live"
      ? `live · updated ${ago ?? 0} s ago`
      : status === "reconnecting"
        ? "reconnecting…"
        : "connecting…";
  return (
    <span className={`live-indicator ${status}`} data-testid="live-indicator" aria-live="off">
      <span className="live-dot" aria-hidden="true" />
      {text}
    </span>
  );
}

function LiveStrip({ job }: { job: Job }) {
  const now = useNow(5000);
  const eta = tsToDate(job.estimatedCompletion);
  const pct = Math.min(100, Math.max(0, job.progressPercent));
  return (
    <div className="live-strip" data-testid="live-strip">
      <div className="live-progress">
        <div
          className="progress-bar"
          role="progressbar"
          aria-label="Job progress"
          aria-valuemin={0}
          aria-valuemax={100}
          aria-valuenow={Math.round(pct)}
        >
          <div className="progress-fill" style={{ width: `${pct}%` }} />
        </div>
        <span className="live-pct" data-testid="live-progress">
          {formatProgress(job.progressPercent)}
        </span>
      </div>
      <span>
        <span className="muted">Phase</span> <span data-testid="live-phase">{job.phase || "—"}</span>
      </span>
      <span>
        <span className="muted">Now</span> {formatSpeed(job.transferSpeedBps)}
      </span>
      <span title={eta ? formatDateTime(eta) : "Estimated once 5% is done after 60 s of reports, with a known total"}>
        <span className="muted">ETA</span>{" "}
        <span data-testid="live-eta">{eta ? `${formatTime(eta)} (${formatRelative(eta, now)})` : "estimating…"}</span>
      </span>
    </div>
  );
}

import { useMemo, useState } from "react";
import { telemetry } from "../api";
import { JobStatus, type MachineOverview } from "../gen/backwatch/v1/telemetry_pb";
import { useNow, useQuery } from "../hooks";
import {
  durationSeconds,
  formatBytes,
  formatDateTime,
  formatDuration,
  formatMachineInfo,
  formatProgress,
  formatRate,
  formatRelative,
  formatSpeed,
  tsToDate,
} from "../format";
import { StatusBadge } from "./StatusBadge";
import { Empty, ErrorState, Loading } from "./States";

export const MACHINES_POLL_MS = 5000;
const PAGE_SIZE = 200;
const MAX_PAGES = 25;

async function listAllMachines(signal: AbortSignal): Promise<MachineOverview[]> {
  const all: MachineOverview[] = [];
  let token = "";
  for (let i = 0; i < MAX_PAGES; i++) {
    const res = await telemetry().listMachines({ pageSize: PAGE_SIZE, pageToken: token }, { signal });
    all.push(...res.machines);
    token = res.nextPageToken;
    if (!token) break;
  }
  return all;
}

export function MachinesPage({ onOpen }: { onOpen: (machine: string) => void }) {
  const q = useQuery(listAllMachines, ["machines"], { intervalMs: MACHINES_POLL_MS });
  const [filter, setFilter] = useState("");
  const now = useNow(10_000);
  const machines = q.data;

  const shown = useMemo(() => {
    const f = filter.trim().toLowerCase();
    const list = machines ?? [];
    return f ? list.filter((m) => (m.machine?.name ?? "").toLowerCase().includes(f)) : list;
  }, [machines, filter]);

  const running = (machines ?? []).filter((m) => m.lastJob?.status === JobStatus.RUNNING).length;
  const failing = (machines ?? []).filter((m) => m.lastJob?.status === JobStatus.FAILED).length;

  return (
    <section className="page" aria-labelledby="machines-title">
      <div className="page-header">
        <div>
          <h1 id="machines-title">Machines</h1>
          {machines ? (
            <p className="muted">
              {machines.length} {machines.length === 1 ? "machine" : "machines"} · {running} running · {failing} with a
              failed last backup
            </p>
          ) : null}
        </div>
        <input
          type="search"
          className="filter"
          placeholder="Filter machines"
          aria-label="Filter machines"
          value={filter}
          onChange={(e) => setFilter(e.target.value)}
        />
      </div>

      {!machines && q.loading ? <Loading label="Loading machines…" /> : null}
      {!machines && q.error ? <ErrorState error={q.error} what="machines" onRetry={q.reload} /> : null}
      {machines && machines.length === 0 ? (
        <Empty>
          No machines yet. They appear here as soon as a backup agent reports its first job.
        </Empty>
      ) : null}
      {machines && machines.length > 0 ? (
        <div className="table-wrap">
          <table className="table machines-table" data-testid="machines-table">
            <thead>
              <tr>
                <th scope="col">Machine</th>
                <th scope="col">Last backup</th>
                <th scope="col">When</th>
                <th scope="col" className="num">
                  Size
                </th>
                <th scope="col" className="num">
                  Duration
                </th>
                <th scope="col" className="num">
                  Success rate
                </th>
                <th scope="col" className="progress-col">
                  Progress
                </th>
              </tr>
            </thead>
            <tbody>
              {shown.map((m) => (
                <MachineRow key={m.machine?.name} m={m} now={now} onOpen={onOpen} />
              ))}
              {shown.length === 0 ? (
                <tr>
                  <td colSpan={7} className="muted center">
                    No machine matches “{filter}”.
                  </td>
                </tr>
              ) : null}
            </tbody>
          </table>
        </div>
      ) : null}
    </section>
  );
}

function MachineRow({ m, now, onOpen }: { m: MachineOverview; now: Date; onOpen: (name: string) => void }) {
  const name = m.machine?.name ?? "";
  const job = m.lastJob;
  const running = job?.status === JobStatus.RUNNING;
  const when = running ? tsToDate(job?.startedAt) : tsToDate(job?.endedAt) ?? tsToDate(job?.lastReportAt);
  const info = formatMachineInfo(m.machine?.info);
  return (
    <tr className="clickable" data-machine={name} onClick={() => onOpen(name)}>
      <th scope="row">
        <button
          type="button"
          className="row-link"
          onClick={(e) => {
            e.stopPropagation();
            onOpen(name);
          }}
        >
          {name}
        </button>
        {info ? <div className="sub">{info}</div> : null}
      </th>
      <td>{job ? <StatusBadge status={job.status} /> : <span className="muted">No backups</span>}</td>
      <td title={formatDateTime(when)}>
        {job ? (running ? `started ${formatRelative(when, now)}` : formatRelative(when, now)) : "—"}
      </td>
      <td className="num">{job ? formatBytes(job.bytesTransferred) : "—"}</td>
      <td className="num">{job ? formatDuration(durationSeconds(job.duration)) : "—"}</td>
      <td className="num" title={`${m.totalJobs} jobs`}>
        {m.totalJobs > 0 ? formatRate(m.successRate) : "—"}
      </td>
      <td className="progress-col">
        {running && job ? (
          <div className="progress" data-testid="row-progress">
            <div
              className="progress-bar"
              role="progressbar"
              aria-label={`Backup progress of ${name}`}
              aria-valuemin={0}
              aria-valuemax={100}
              aria-valuenow={Math.round(job.progressPercent)}
            >
              <div className="progress-fill" style={{ width: `${Math.min(100, Math.max(0, job.progressPercent))}%` }} />
            </div>
            <span className="progress-text">
              {formatProgress(job.progressPercent)} · {formatSpeed(job.transferSpeedBps)}
              {job.phase ? ` · ${job.phase}` : ""}
            </span>
          </div>
        ) : (
          <span className="muted">—</span>
        )}
      </td>
    </tr>
  );
}

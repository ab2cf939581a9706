import { useMemo, useState } from "react";
import { CartesianGrid, Cell, Line, LineChart, Pie, PieChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { JobStatus, JobType, type GetMachineSummaryResponse, type TrendPoint } from "../gen/backwatch/v1/telemetry_pb";
import type { QueryState } from "../hooks";
import {
  GB,
  durationSeconds,
  formatBytes,
  formatDate,
  formatDuration,
  formatRate,
  formatSpeed,
  formatTime,
  jobTypeLabel,
  num,
  statusLabel,
  tsToDate,
} from "../format";
import { formatChange, trendVerdict, verdictLabel, type TrendKind, type TrendResult } from "../trends";
import { ACCENT } from "./SpeedChart";
import { Empty, ErrorState, Loading } from "./States";
import { endedCount } from "./SummaryTab";

const COLORS = { succeeded: "#2e7d32", failed: "#c62828", other: "#b7791f" };

type TypeFilter = "all" | "full" | "incremental";

export function AnalyticsTab({ summary }: { summary: QueryState<GetMachineSummaryResponse> }) {
  const s = summary.data;
  if (!s && summary.loading) return <Loading label="Loading analytics…" />;
  if (!s && summary.error) return <ErrorState error={summary.error} what="analytics" onRetry={summary.reload} />;
  if (!s) return null;
  return (
    <div className="analytics-tab">
      <SuccessDonut s={s} />
      <Trends trend={s.trend} />
    </div>
  );
}

function SuccessDonut({ s }: { s: GetMachineSummaryResponse }) {
  const other = s.cancelledJobs + s.abandonedJobs;
  const ended = endedCount(s);
  const slices = [
    { key: "succeeded", label: "Succeeded", value: s.succeededJobs, color: COLORS.succeeded },
    { key: "failed", label: "Failed", value: s.failedJobs, color: COLORS.failed },
    { key: "other", label: "Other (cancelled, abandoned)", value: other, color: COLORS.other },
  ];
  return (
    <section className="panel donut-panel" aria-labelledby="donut-title" data-testid="success-donut">
      <h3 id="donut-title">Outcomes</h3>
      {ended === 0 ? (
        <Empty>No ended jobs yet{s.runningJobs ? ` (${s.runningJobs} running)` : ""}.</Empty>
      ) : (
        <div className="donut-wrap">
          <div className="donut" role="img" aria-label={`Success rate ${formatRate(s.successRate)}: ${s.succeededJobs} succeeded, ${s.failedJobs} failed, ${other} other`}>
            <ResponsiveContainer width="100%" height="100%">
              <PieChart>
                <Pie
                  data={slices.filter((x) => x.value > 0)}
                  dataKey="value"
                  nameKey="label"
                  innerRadius="62%"
                  outerRadius="95%"
                  startAngle={90}
                  endAngle={-270}
                  stroke="#fff"
                  strokeWidth={2}
                  isAnimationActive={false}
                >
                  {slices
                    .filter((x) => x.value > 0)
                    .map((x) => (
                      <Cell key={x.key} fill={x.color} />
                    ))}
                </Pie>
              </PieChart>
            </ResponsiveContainer>
            <div className="donut-center">
              <div className="donut-rate" data-testid="donut-rate">
                {formatRate(s.successRate)}
              </div>
              <div className="muted small">success</div>
            </div>
          </div>
          <ul className="legend">
            {slices.map((x) => (
              <li key={x.key} data-testid={`donut-${x.key}`}>
                <span className="swatch" style={{ background: x.color }} aria-hidden="true" />
                <span className="legend-label">{x.label}</span>
                <span className="legend-count">{x.value}</span>
              </li>
            ))}
            <li className="legend-total">
              <span className="swatch" aria-hidden="true" />
              <span className="legend-label">Ended jobs</span>
              <span className="legend-count">{ended}</span>
            </li>
            {s.runningJobs ? (
              <li className="muted small">plus {s.runningJobs} running</li>
            ) : null}
          </ul>
        </div>
      )}
    </section>
  );
}

interface TrendRow {
  label: string;
  short: string;
  when?: Date;
  status: JobStatus;
  type: JobType;
  sizeGB: number;
  durationMin: number;
  speedMBps: number;
}

/** Trend rows over succeeded jobs (failed ones would skew size and duration), oldest first. */
export function trendRows(trend: TrendPoint[], filter: TypeFilter): TrendRow[] {
  return trend
    .filter((t) => t.status === JobStatus.SUCCEEDED)
    .filter((t) => filter === "all" || (filter === "full" ? t.jobType === JobType.FULL : t.jobType === JobType.INCREMENTAL))
    .map((t) => {
      const when = tsToDate(t.startedAt);
      return {
        label: when ? `${formatDate(when)} ${formatTime(when)}` : t.jobId,
        short: when ? when.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }) : "",
        when,
        status: t.status,
        type: t.jobType,
        sizeGB: num(t.bytesTransferred) / GB,
        durationMin: durationSeconds(t.duration) / 60,
        speedMBps: num(t.averageSpeedBps) / 1e6,
      };
    });
}

/** Full and incremental sizes differ by an order of magnitude: start with the usual type. */
export function defaultTypeFilter(trend: TrendPoint[]): TypeFilter {
  const ok = trend.filter((t) => t.status === JobStatus.SUCCEEDED);
  const full = ok.filter((t) => t.jobType === JobType.FULL).length;
  const incr = ok.filter((t) => t.jobType === JobType.INCREMENTAL).length;
  if (!full || !incr) return "all";
  return incr >= full ? "incremental" : "full";
}

function Trends({ trend }: { trend: TrendPoint[] }) {
  const [filter, setFilter] = useState<TypeFilter>(() => defaultTypeFilter(trend));
  const rows = useMemo(() => trendRows(trend, filter), [trend, filter]);
  const hasFull = trend.some((t) => t.jobType === JobType.FULL);
  const hasIncr = trend.some((t) => t.jobType === JobType.INCREMENTAL);
  return (
    <section className="panel trends-panel" aria-labelledby="trends-title" data-testid="trends">
      <div className="section-header">
        <h3 id="trends-title">
          Trends{" "}
          <span className="muted small">
            last {rows.length} succeeded {filter === "all" ? "" : `${filter} `}
            {rows.length === 1 ? "job" : "jobs"}, oldest first; newer half against older half
          </span>
        </h3>
        <div className="segmented" role="group" aria-label="Job type">
          {(["all", "full", "incremental"] as TypeFilter[]).map((f) => (
            <button
              key={f}
              type="button"
              aria-pressed={filter === f}
              className={filter === f ? "seg active" : "seg"}
              disabled={(f === "full" && !hasFull) || (f === "incremental" && !hasIncr)}
              onClick={() => setFilter(f)}
            >
              {f === "all" ? "All types" : jobTypeLabel(f === "full" ? JobType.FULL : JobType.INCREMENTAL)}
            </button>
          ))}
        </div>
      </div>
      {rows.length === 0 ? (
        <Empty>No succeeded jobs to show trends for yet.</Empty>
      ) : (
        <div className="trend-grid">
          <TrendCard
            title="Size"
            kind="size"
            rows={rows}
            dataKey="sizeGB"
            unit="GB"
            format={(v) => formatBytes(v * GB)}
          />
          <TrendCard
            title="Duration"
            kind="duration"
            rows={rows}
            dataKey="durationMin"
            unit="min"
            format={(v) => formatDuration(v * 60)}
          />
          <TrendCard
            title="Average speed"
            kind="speed"
            rows={rows}
            dataKey="speedMBps"
            unit="MB/s"
            format={(v) => formatSpeed(v * 1e6)}
          />
        </div>
      )}
    </section>
  );
}

function TrendCard({
  title,
  kind,
  rows,
  dataKey,
  unit,
  format,
}: {
  title: string;
  kind: TrendKind;
  rows: TrendRow[];
  dataKey: "sizeGB" | "durationMin" | "speedMBps";
  unit: string;
  format: (v: number) => string;
}) {
  const result: TrendResult = trendVerdict(
    rows.map((r) => r[dataKey]),
    kind,
  );
  const latest = rows[rows.length - 1][dataKey];
  const arrow =
    result.verdict === "insufficient" ? "" : result.verdict === "steady" ? "→" : result.newerMean > result.olderMean ? "↗" : "↘";
  return (
    <div className="trend-card" data-testid={`trend-${kind}`} data-verdict={result.verdict}>
      <div className="trend-head">
        <span className="trend-title">
          {title} <span className="muted small">({unit})</span>
        </span>
        <span className={`verdict verdict-${result.verdict}`} data-testid={`verdict-${kind}`}>
          <span aria-hidden="true">{arrow} </span>
          {verdictLabel(result.verdict)}
          {result.change !== null ? <span className="muted"> {formatChange(result.change)}</span> : null}
        </span>
      </div>
      <div className="trend-latest">
        <span className="muted small">latest</span> {format(latest)}
        {Number.isFinite(result.olderMean) ? (
          <span className="muted small">
            {" "}
            · older half {format(result.olderMean)} → newer half {format(result.newerMean)}
          </span>
        ) : null}
      </div>
      <div className="trend-chart">
        <ResponsiveContainer width="100%" height="100%">
          <LineChart data={rows} margin={{ top: 6, right: 8, bottom: 0, left: 0 }}>
            <CartesianGrid stroke="#e9ecf0" vertical={false} />
            <XAxis
              dataKey="short"
              tick={{ fill: "#5b6472", fontSize: 10 }}
              stroke="#e4e7ec"
              interval="preserveStartEnd"
              minTickGap={40}
              height={16}
            />
            <YAxis
              width={40}
              tick={{ fill: "#5b6472", fontSize: 10 }}
              tickFormatter={(v: number) => String(Number(v.toPrecision(3)))}
              stroke="#e4e7ec"
              tickCount={3}
              domain={["auto", "auto"]}
            />
            <Tooltip
              isAnimationActive={false}
              formatter={(v) => [format(Number(v)), title]}
              labelFormatter={(l, p) => {
                const r = p?.[0]?.payload as TrendRow | undefined;
                return r ? `${r.label} · ${jobTypeLabel(r.type)} · ${statusLabel(r.status)}` : String(l);
              }}
              contentStyle={{ fontSize: 12, borderColor: "#d0d5dd" }}
            />
            <Line type="monotone" dataKey={dataKey} stroke={ACCENT} strokeWidth={1.6} dot={{ r: 2 }} isAnimationActive={false} />
          </LineChart>
        </ResponsiveContainer>
      </div>
    </div>
  );
}

import {
  Area,
  AreaChart,
  CartesianGrid,
  ReferenceDot,
  ReferenceLine,
  ResponsiveContainer,
  Tooltip,
  XAxis,
  YAxis,
  type TooltipContentProps,
} from "recharts";
import type { NameType, ValueType } from "recharts/types/component/DefaultTooltipContent";
import type { ChartRow, TimeAxis } from "../chartData";
import { niceTicks, peakRow } from "../chartData";
import { formatBytes, formatElapsedClock, formatMBps, formatProgress, formatTime } from "../format";

export const ACCENT = "#2f5fa7";
const GRID = "#e4e7ec";
const AXIS = "#5b6472";

interface SpeedChartProps {
  rows: ChartRow[];
  axis: TimeAxis;
  averageMBps: number;
  startedAt?: Date;
  /** true once the chart shows the final, stored record. */
  final: boolean;
  live: boolean;
}

export function SpeedChart({ rows, axis, averageMBps, startedAt, final, live }: SpeedChartProps) {
  const peak = peakRow(rows);
  const maxX = rows.length && rows[rows.length - 1].x > 0 ? rows[rows.length - 1].x : 1;
  const xTicks = niceTicks(maxX, 8, false);
  const maxY = Math.max(averageMBps, ...rows.map((r) => r.mbps), 0);
  const yTicks = niceTicks(maxY > 0 ? maxY * 1.08 : 1, 5, true);
  return (
    <div
      className="chart"
      data-testid="speed-chart"
      data-point-count={rows.length}
      data-final={final ? "true" : "false"}
      data-live={live ? "true" : "false"}
      role="img"
      aria-label={`Transfer speed over elapsed time, ${rows.length} points${peak ? `, peak ${formatMBps(peak.mbps)} MB/s` : ""}, average ${formatMBps(averageMBps)} MB/s`}
    >
      <ResponsiveContainer width="100%" height="100%" minHeight={200}>
        <AreaChart data={rows} margin={{ top: 22, right: 24, bottom: 22, left: 8 }}>
          <defs>
            <linearGradient id="speedFill" x1="0" y1="0" x2="0" y2="1">
              <stop offset="0%" stopColor={ACCENT} stopOpacity={0.32} />
              <stop offset="100%" stopColor={ACCENT} stopOpacity={0.04} />
            </linearGradient>
          </defs>
          <CartesianGrid stroke={GRID} vertical={false} />
          <XAxis
            dataKey="x"
            type="number"
            domain={[0, maxX]}
            ticks={xTicks}
            interval={0}
            tick={{ fill: AXIS, fontSize: 11 }}
            tickFormatter={(v: number) => formatTick(v)}
            stroke={GRID}
            label={{ value: axis.label, position: "insideBottom", offset: -12, fill: AXIS, fontSize: 11 }}
          />
          <YAxis
            dataKey="mbps"
            domain={[0, yTicks[yTicks.length - 1]]}
            ticks={yTicks}
            interval={0}
            tick={{ fill: AXIS, fontSize: 11 }}
            tickFormatter={(v: number) => formatTick(v)}
            stroke={GRID}
            width={56}
            label={{ value: "Speed (MB/s)", angle: -90, position: "insideLeft", offset: 12, fill: AXIS, fontSize: 11, style: { textAnchor: "middle" } }}
          />
          <Tooltip
            content={(p) => <SpeedTooltip active={p.active} payload={p.payload} startedAt={startedAt} />}
            cursor={{ stroke: AXIS, strokeDasharray: "3 3" }}
            isAnimationActive={false}
          />
          <Area
            type="monotone"
            dataKey="mbps"
            name="Speed"
            stroke={ACCENT}
            strokeWidth={1.6}
            fill="url(#speedFill)"
            isAnimationActive={false}
            dot={false}
            activeDot={{ r: 3 }}
          />
          {averageMBps > 0 ? (
            <ReferenceLine
              y={averageMBps}
              stroke="#6b7280"
              strokeDasharray="5 4"
              ifOverflow="hidden"
              label={{ value: `avg ${formatMBps(averageMBps)} MB/s`, position: "insideTopRight", fill: "#4b5563", fontSize: 11 }}
            />
          ) : null}
          {peak && peak.mbps > 0 ? (
            <ReferenceDot
              x={peak.x}
              y={peak.mbps}
              r={4}
              fill="#ffffff"
              stroke={ACCENT}
              strokeWidth={2}
              ifOverflow="extendDomain"
              label={{ value: `peak ${formatMBps(peak.mbps)} MB/s`, position: "top", fill: "#1f2937", fontSize: 11 }}
            />
          ) : null}
        </AreaChart>
      </ResponsiveContainer>
    </div>
  );
}

function formatTick(v: number): string {
  return Number.isInteger(v) ? v.toLocaleString("en-US") : String(Number(v.toPrecision(3)));
}

function SpeedTooltip({ active, payload, startedAt }: Pick<TooltipContentProps<ValueType, NameType>, "active" | "payload"> & { startedAt?: Date }) {
  if (!active || !payload?.length) return null;
  const row = payload[0].payload as ChartRow;
  const at = startedAt ? new Date(startedAt.getTime() + row.t * 1000) : undefined;
  return (
    <div className="chart-tooltip">
      <div className="tt-title">
        +{formatElapsedClock(row.t)}
        {at ? <span className="muted"> · {formatTime(at, true)}</span> : null}
      </div>
      <dl>
        <dt>Speed</dt>
        <dd>{formatMBps(row.mbps)} MB/s</dd>
        <dt>Transferred</dt>
        <dd>{formatBytes(row.bytes)}</dd>
        <dt>Progress</dt>
        <dd>{formatProgress(row.percent)}</dd>
        {row.phase ? (
          <>
            <dt>Phase</dt>
            <dd>{row.phase}</dd>
          </>
        ) : null}
      </dl>
    </div>
  );
}

// Turns speed points into chart rows and figures. Pure functions, unit tested.
import type { Job, PerformanceRecord, SpeedPoint } from "./gen/backwatch/v1/telemetry_pb";
import { bpsToMBps, durationSeconds, num } from "./format";

export interface ChartRow {
  /** Elapsed time in the axis unit (see TimeAxis). */
  x: number;
  /** Elapsed seconds since the job started. */
  t: number;
  /** Speed in MB/s. */
  mbps: number;
  bytes: number;
  percent: number;
  phase: string;
}

export interface TimeAxis {
  unit: "s" | "min" | "h";
  divisor: number;
  label: string;
}

/** Seconds for short jobs, minutes up to two hours, hours beyond. */
export function timeAxisFor(maxSeconds: number): TimeAxis {
  if (maxSeconds <= 120) return { unit: "s", divisor: 1, label: "Elapsed time (s)" };
  if (maxSeconds <= 2 * 3600) return { unit: "min", divisor: 60, label: "Elapsed time (min)" };
  return { unit: "h", divisor: 3600, label: "Elapsed time (h)" };
}

/**
 * Appends streamed points to what we have. WatchJob sends only new points after the first
 * message, but a reopened stream starts over with every point: points at or before the last
 * known elapsed time replace nothing and are dropped, out-of-order ones are merged in.
 */
export function mergePoints(existing: SpeedPoint[], incoming: SpeedPoint[]): SpeedPoint[] {
  if (incoming.length === 0) return existing;
  const last = existing.length ? existing[existing.length - 1].elapsedSeconds : -Infinity;
  if (incoming.every((p, i) => p.elapsedSeconds > last && (i === 0 || p.elapsedSeconds > incoming[i - 1].elapsedSeconds))) {
    return existing.concat(incoming);
  }
  const byTime = new Map<number, SpeedPoint>();
  for (const p of existing) byTime.set(p.elapsedSeconds, p);
  for (const p of incoming) byTime.set(p.elapsedSeconds, p);
  return [...byTime.values()].sort((a, b) => a.elapsedSeconds - b.elapsedSeconds);
}

export function toChartRows(points: SpeedPoint[], axis: TimeAxis): ChartRow[] {
  return [...points]
    .sort((a, b) => a.elapsedSeconds - b.elapsedSeconds)
    .map((p) => ({
      x: p.elapsedSeconds / axis.divisor,
      t: p.elapsedSeconds,
      mbps: bpsToMBps(p.speedBps),
      bytes: num(p.bytesTransferred),
      percent: p.progressPercent,
      phase: p.phase,
    }));
}

/** The first point with the highest speed, or undefined for no points. */
export function peakRow(rows: ChartRow[]): ChartRow | undefined {
  let best: ChartRow | undefined;
  for (const r of rows) if (!best || r.mbps > best.mbps) best = r;
  return best;
}

export interface SpeedFigures {
  peakBps: number;
  averageBps: number;
  minBps: number;
  durationSeconds: number;
  bytes: number;
}

/**
 * Figures for the Performance tab. The stored record wins (its peak and minimum cover every
 * report, not only the stored points); while a job runs they come from the points so far and
 * the job's live counters (average = bytes / duration, like the record).
 */
export function speedFigures(points: SpeedPoint[], record?: PerformanceRecord, job?: Job): SpeedFigures {
  if (record) {
    return {
      peakBps: num(record.peakSpeedBps),
      averageBps: num(record.averageSpeedBps),
      minBps: num(record.minSpeedBps),
      durationSeconds: durationSeconds(record.duration),
      bytes: num(record.bytesTransferred),
    };
  }
  const speeds = points.map((p) => num(p.speedBps));
  // The first sample of a job is usually 0 B/s (nothing moved yet): not a meaningful minimum.
  const moving = speeds.filter((v) => v > 0);
  const lastPoint = points.length ? points[points.length - 1] : undefined;
  const duration = job?.duration ? durationSeconds(job.duration) : lastPoint?.elapsedSeconds ?? 0;
  const bytes = job ? num(job.bytesTransferred) : num(lastPoint?.bytesTransferred);
  const live = job ? num(job.transferSpeedBps) : 0;
  return {
    peakBps: Math.max(0, live, ...speeds),
    averageBps: duration > 0 ? bytes / duration : 0,
    minBps: moving.length ? Math.min(...moving) : 0,
    durationSeconds: duration,
    bytes,
  };
}

/** A "nice" step (1, 2, 2.5 or 5 × 10^k) that splits [0, max] into about `target` parts. */
export function niceStep(max: number, target = 5): number {
  if (!(max > 0) || !Number.isFinite(max)) return 1;
  const raw = max / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const mult = norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10;
  return mult * mag;
}

/**
 * Ticks from 0 in nice steps. extend: the last tick is at or above max (a value axis);
 * otherwise no tick passes max (the time axis, which ends at the last point).
 */
export function niceTicks(max: number, target = 5, extend = true): number[] {
  const step = niceStep(max, target);
  const count = extend ? Math.max(1, Math.ceil(max / step - 1e-9)) : Math.floor(max / step + 1e-9);
  const ticks: number[] = [];
  for (let i = 0; i <= count; i++) ticks.push(Number((i * step).toPrecision(12)));
  return ticks;
}

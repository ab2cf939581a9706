// The one place where numbers, sizes, speeds, durations and dates become text.
// Sizes and speeds are decimal (1 GB = 10^9 bytes, 1 MB/s = 10^6 bytes per second), the way
// backup consoles and disk vendors count. Speeds are always shown in MB/s so figures, axes and
// tooltips compare at a glance. Dates and times use the browser's locale.
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import { JobStatus, JobType, type MachineInfo } from "./gen/backwatch/v1/telemetry_pb";

export const MB = 1_000_000;
export const GB = 1_000_000_000;

const EM_DASH = "—";

/** A uint64 field (bigint), a plain number or nothing, as a JS number. */
export function num(v: bigint | number | undefined | null): number {
  if (v === undefined || v === null) return 0;
  return typeof v === "bigint" ? Number(v) : v;
}

/** Timestamp message to Date; undefined when unset. */
export function tsToDate(ts: Timestamp | undefined): Date | undefined {
  if (!ts) return undefined;
  const ms = Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1_000_000);
  return new Date(ms);
}

/** Duration message to seconds (fractional); 0 when unset. */
export function durationSeconds(d: Duration | undefined): number {
  if (!d) return 0;
  return Number(d.seconds) + d.nanos / 1e9;
}

/** Three significant digits, but never more than two decimals: 1.23, 12.3, 123, 1,234. */
function sig3(value: number): string {
  const abs = Math.abs(value);
  const decimals = abs === 0 ? 0 : abs < 10 ? 2 : abs < 100 ? 1 : 0;
  return value.toLocaleString("en-US", {
    minimumFractionDigits: decimals,
    maximumFractionDigits: decimals,
  });
}

const BYTE_UNITS = ["B", "kB", "MB", "GB", "TB", "PB"];

/** Decimal byte size: 0 B, 950 B, 1.50 kB, 12.3 MB, 1.23 GB, 4.50 TB. */
export function formatBytes(bytes: bigint | number | undefined): string {
  let v = num(bytes);
  if (!Number.isFinite(v) || v < 0) return EM_DASH;
  if (v < 1000) return `${Math.round(v)} B`;
  let unit = 0;
  while (v >= 1000 && unit < BYTE_UNITS.length - 1) {
    v /= 1000;
    unit++;
  }
  // 999.95 MB rounds to "1,000 MB": move up a unit instead.
  if (Number(v.toFixed(0)) >= 1000 && unit < BYTE_UNITS.length - 1) {
    v /= 1000;
    unit++;
  }
  return `${sig3(v)} ${BYTE_UNITS[unit]}`;
}

/** Bytes per second as MB/s, always MB/s: 0 MB/s, 0.42 MB/s, 12.3 MB/s, 1,234 MB/s. */
export function formatSpeed(bps: bigint | number | undefined): string {
  const v = num(bps);
  if (!Number.isFinite(v) || v < 0) return EM_DASH;
  return `${formatMBps(v / MB)} MB/s`;
}

/** A value already in MB/s, without the unit (chart axes and tooltips). */
export function formatMBps(mbps: number): string {
  if (mbps === 0) return "0";
  if (Math.abs(mbps) < 0.01) return mbps.toFixed(3);
  return sig3(mbps);
}

/** Bytes to MB/s number for charts. */
export function bpsToMBps(bps: bigint | number | undefined): number {
  return num(bps) / MB;
}

/** Human duration: "45 s", "12 min 5 s", "2 h 14 min", "3 d 4 h". */
export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return EM_DASH;
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) {
    const m = Math.floor(s / 60);
    const r = s % 60;
    return r ? `${m} min ${r} s` : `${m} min`;
  }
  if (s < 86400) {
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    return m ? `${h} h ${m} min` : `${h} h`;
  }
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  return h ? `${d} d ${h} h` : `${d} d`;
}

/** Clock-style elapsed time for tooltips: "0:45", "12:05", "1:02:03". */
export function formatElapsedClock(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return EM_DASH;
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  const mm = h ? String(m).padStart(2, "0") : String(m);
  return h ? `${h}:${mm}:${String(r).padStart(2, "0")}` : `${mm}:${String(r).padStart(2, "0")}`;
}

/** A 0-1 fraction as a percentage: "100%", "92.5%", "0%". */
export function formatRate(fraction: number | undefined): string {
  if (fraction === undefined || !Number.isFinite(fraction)) return EM_DASH;
  const pct = Math.min(1, Math.max(0, fraction)) * 100;
  const rounded = Math.round(pct * 10) / 10;
  return `${Number.isInteger(rounded) ? rounded.toFixed(0) : rounded.toFixed(1)}%`;
}

/** A 0-100 progress value: "42%", "99.5%". */
export function formatProgress(percent: number | undefined): string {
  if (percent === undefined || !Number.isFinite(percent)) return EM_DASH;
  return formatRate(percent / 100);
}

export function formatDateTime(d: Date | undefined): string {
  if (!d) return EM_DASH;
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function formatDate(d: Date | undefined): string {
  if (!d) return EM_DASH;
  return d.toLocaleDateString(undefined, { dateStyle: "medium" });
}

export function formatTime(d: Date | undefined, withSeconds = false): string {
  if (!d) return EM_DASH;
  return d.toLocaleTimeString(undefined, {
    hour: "2-digit",
    minute: "2-digit",
    ...(withSeconds ? { second: "2-digit" } : {}),
  });
}

/** "just now", "5 min ago", "3 h ago", "2 d ago"; future times: "in 4 min". */
export function formatRelative(d: Date | undefined, now: Date = new Date()): string {
  if (!d) return EM_DASH;
  const diff = Math.round((now.getTime() - d.getTime()) / 1000);
  const abs = Math.abs(diff);
  let text: string;
  if (abs < 45) return diff >= 0 ? "just now" : "in a moment";
  if (abs < 3600) text = `${Math.max(1, Math.round(abs / 60))} min`;
  else if (abs < 86400) text = `${Math.round(abs / 3600)} h`;
  else text = `${Math.round(abs / 86400)} d`;
  return diff >= 0 ? `${text} ago` : `in ${text}`;
}

export type StatusKey = "running" | "succeeded" | "failed" | "cancelled" | "abandoned" | "unknown";

export function statusKey(s: JobStatus | undefined): StatusKey {
  switch (s) {
    case JobStatus.RUNNING:
      return "running";
    case JobStatus.SUCCEEDED:
      return "succeeded";
    case JobStatus.FAILED:
      return "failed";
    case JobStatus.CANCELLED:
      return "cancelled";
    case JobStatus.ABANDONED:
      return "abandoned";
    default:
      return "unknown";
  }
}

export function statusLabel(s: JobStatus | undefined): string {
  const k = statusKey(s);
  return k === "unknown" ? "Unknown" : k[0].toUpperCase() + k.slice(1);
}

export function jobTypeLabel(t: JobType | undefined): string {
  switch (t) {
    case JobType.FULL:
      return "Full";
    case JobType.INCREMENTAL:
      return "Incremental";
    default:
      return EM_DASH;
  }
}

function plural(n: number, one: string, many: string): string {
  return `${n.toLocaleString("en-US")} ${n === 1 ? one : many}`;
}

/** "2 cores, 8 GB, 2 disks, Debian 12"; only the parts the agent reported. */
export function formatMachineInfo(info: MachineInfo | undefined): string {
  if (!info) return "";
  const parts: string[] = [];
  if (info.cpuCores) parts.push(plural(info.cpuCores, "core", "cores"));
  const mem = num(info.memoryBytes);
  if (mem > 0) parts.push(formatMemory(mem));
  if (info.diskCount) parts.push(plural(info.diskCount, "disk", "disks"));
  if (info.os.trim()) parts.push(info.os.trim());
  return parts.join(", ");
}

/** Memory in decimal units, without needless decimals: "8 GB", "8.59 GB", "512 MB". */
export function formatMemory(bytes: number): string {
  const text = formatBytes(bytes);
  return text.replace(/\.0+ /, " ");
}

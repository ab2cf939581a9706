// Live view of one running job through WatchJob, reopened with backoff when the stream breaks.
import { useEffect, useState } from "react";
import { Code, ConnectError } from "@connectrpc/connect";
import { telemetry, isAbort } from "./api";
import { JobStatus, type Job, type PerformanceRecord, type SpeedPoint } from "./gen/backwatch/v1/telemetry_pb";
import { mergePoints } from "./chartData";
import { backoffMs, sleep } from "./hooks";

export type WatchStatus = "connecting" | "live" | "reconnecting" | "ended" | "error";

export interface WatchState {
  jobId?: string;
  job?: Job;
  points: SpeedPoint[];
  /** The final record, once the job has ended. */
  record?: PerformanceRecord;
  status: WatchStatus;
  lastMessageAt?: Date;
  error?: unknown;
  /** Messages received over all streams (diagnostics, e2e). */
  messages: number;
}

/** No message for this long (and at least 4 of the observed gaps) means the stream is dead. */
const MIN_STALL_MS = 20_000;

export function useJobWatch(jobId: string | undefined, enabled: boolean): WatchState {
  const [state, setState] = useState<WatchState>({ points: [], status: "connecting", messages: 0 });

  useEffect(() => {
    if (!jobId || !enabled) return;
    setState({ jobId, points: [], status: "connecting", messages: 0 });
    const outer = new AbortController();
    const client = telemetry();

    (async () => {
      let attempt = 0;
      let maxGapMs = 0;
      while (!outer.signal.aborted) {
        const inner = new AbortController();
        const onOuterAbort = () => inner.abort();
        outer.signal.addEventListener("abort", onOuterAbort, { once: true });
        let watchdog: ReturnType<typeof setTimeout> | undefined;
        const kick = () => {
          if (watchdog) clearTimeout(watchdog);
          watchdog = setTimeout(() => inner.abort(), Math.max(MIN_STALL_MS, 4 * maxGapMs));
        };
        let ended = false;
        try {
          kick();
          let first = true;
          let lastAt = 0;
          for await (const msg of client.watchJob({ jobId }, { signal: inner.signal })) {
            const now = Date.now();
            if (!first) maxGapMs = Math.max(maxGapMs, now - lastAt);
            lastAt = now;
            kick();
            attempt = 0;
            const isFirst = first;
            first = false;
            if (msg.performance) ended = true;
            setState((s) => ({
              jobId,
              job: msg.job ?? s.job,
              // A (re)opened stream starts with every point so far.
              points: isFirst ? msg.points : mergePoints(s.points, msg.points),
              record: msg.performance ?? s.record,
              status: msg.performance ? "ended" : "live",
              lastMessageAt: new Date(),
              messages: s.messages + 1,
            }));
          }
          if (ended) return;
          // The stream closed without a record: the job may have ended in between.
          const h = await client.getHistory({ jobId }, { signal: inner.signal });
          if (h.job && h.job.status !== JobStatus.RUNNING) {
            const job = h.job;
            setState((s) => ({
              ...s,
              job,
              record: h.performance,
              points: h.performance?.points.length ? h.performance.points : s.points,
              status: "ended",
              lastMessageAt: new Date(),
            }));
            return;
          }
        } catch (e) {
          if (outer.signal.aborted) return;
          const code = isAbort(e) ? Code.Canceled : ConnectError.from(e).code;
          if (code === Code.NotFound || code === Code.InvalidArgument) {
            setState((s) => ({ ...s, status: "error", error: e }));
            return;
          }
          setState((s) => ({ ...s, status: "reconnecting", error: isAbort(e) ? undefined : e }));
        } finally {
          if (watchdog) clearTimeout(watchdog);
          outer.signal.removeEventListener("abort", onOuterAbort);
        }
        attempt++;
        setState((s) => (s.status === "ended" ? s : { ...s, status: "reconnecting" }));
        await sleep(backoffMs(attempt), outer.signal);
      }
    })();

    return () => outer.abort();
  }, [jobId, enabled]);

  return state.jobId === jobId ? state : { jobId, points: [], status: "connecting", messages: 0 };
}

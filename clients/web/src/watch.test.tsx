import { afterEach, describe, expect, it, vi } from "vitest";
import { cleanup, renderHook, waitFor } from "@testing-library/react";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  JobSchema,
  JobStatus,
  PerformanceRecordSchema,
  SpeedPointSchema,
  WatchJobResponseSchema,
  type WatchJobResponse,
} from "./gen/backwatch/v1/telemetry_pb";

// A scripted WatchJob: each call to watchJob() plays the next script.
type Script = (signal: AbortSignal) => AsyncGenerator<WatchJobResponse>;
const scripts: Script[] = [];
let calls = 0;
const fakeClient = {
  watchJob: (_req: unknown, opts: { signal: AbortSignal }) => {
    const script = scripts[Math.min(calls, scripts.length - 1)];
    calls++;
    return script(opts.signal);
  },
  getHistory: async () => {
    throw new ConnectError("down", Code.Unavailable);
  },
};
vi.mock("./api", async (orig) => ({ ...(await orig<typeof import("./api")>()), telemetry: () => fakeClient }));

const { useJobWatch } = await import("./watch");

const pt = (t: number) => create(SpeedPointSchema, { elapsedSeconds: t, speedBps: 1_000_000n * BigInt(t + 1) });
const msg = (points: number[], status = JobStatus.RUNNING, final = false) =>
  create(WatchJobResponseSchema, {
    job: create(JobSchema, { jobId: "j", status }),
    points: points.map(pt),
    performance: final ? create(PerformanceRecordSchema, { points: [pt(0), pt(9)] }) : undefined,
  });
const tick = () => new Promise((r) => setTimeout(r, 5));

afterEach(() => {
  cleanup();
  scripts.length = 0;
  calls = 0;
});

describe("useJobWatch", () => {
  it("takes every point first, appends updates, and ends on the record", async () => {
    scripts.push(async function* () {
      yield msg([0, 3]);
      await tick();
      yield msg([6]);
      await tick();
      yield msg([9], JobStatus.SUCCEEDED, true);
    });
    const { result } = renderHook(() => useJobWatch("j", true));
    await waitFor(() => expect(result.current.status).toBe("ended"));
    expect(result.current.points.map((p) => p.elapsedSeconds)).toEqual([0, 3, 6, 9]);
    expect(result.current.record?.points).toHaveLength(2);
    expect(result.current.job?.status).toBe(JobStatus.SUCCEEDED);
    expect(result.current.messages).toBe(3);
    expect(calls).toBe(1);
  });

  it("reopens a broken stream and starts over from its first message", async () => {
    scripts.push(async function* () {
      yield msg([0, 3]);
      await tick();
      throw new ConnectError("connection reset", Code.Unavailable);
    });
    scripts.push(async function* () {
      yield msg([0, 3, 6]); // a reopened stream sends every point again
      await tick();
      yield msg([9]);
      await new Promise(() => {}); // stays open
    });
    const { result } = renderHook(() => useJobWatch("j", true));
    await waitFor(() => expect(result.current.status).toBe("reconnecting"));
    await waitFor(() => expect(result.current.points).toHaveLength(4), { timeout: 5000 });
    expect(result.current.points.map((p) => p.elapsedSeconds)).toEqual([0, 3, 6, 9]);
    expect(result.current.status).toBe("live");
    expect(calls).toBe(2);
  });

  it("gives up on an unknown job", async () => {
    scripts.push(async function* () {
      yield* [];
      throw new ConnectError("job j not found", Code.NotFound);
    });
    const { result } = renderHook(() => useJobWatch("j", true));
    await waitFor(() => expect(result.current.status).toBe("error"));
    await new Promise((r) => setTimeout(r, 50));
    expect(calls).toBe(1);
  });

  it("does nothing while disabled", async () => {
    const { result } = renderHook(() => useJobWatch("j", false));
    await new Promise((r) => setTimeout(r, 20));
    expect(calls).toBe(0);
    expect(result.current.points).toEqual([]);
  });
});

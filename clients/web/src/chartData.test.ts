import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { JobSchema, PerformanceRecordSchema, SpeedPointSchema, type SpeedPoint } from "./gen/backwatch/v1/telemetry_pb";
import { mergePoints, niceStep, niceTicks, peakRow, speedFigures, timeAxisFor, toChartRows } from "./chartData";

const pt = (t: number, mbps: number, phase = "transfer", bytes = t * mbps * 1e6): SpeedPoint =>
  create(SpeedPointSchema, {
    elapsedSeconds: t,
    speedBps: BigInt(Math.round(mbps * 1e6)),
    bytesTransferred: BigInt(Math.round(bytes)),
    progressPercent: t,
    phase,
  });

describe("timeAxisFor", () => {
  it("picks seconds, minutes or hours", () => {
    expect(timeAxisFor(90).unit).toBe("s");
    expect(timeAxisFor(600)).toEqual({ unit: "min", divisor: 60, label: "Elapsed time (min)" });
    expect(timeAxisFor(5 * 3600).unit).toBe("h");
  });
});

describe("toChartRows", () => {
  it("converts to MB/s and the axis unit, sorted by time", () => {
    const rows = toChartRows([pt(120, 50), pt(60, 100, "snapshot")], timeAxisFor(600));
    expect(rows.map((r) => r.x)).toEqual([1, 2]);
    expect(rows[0]).toMatchObject({ t: 60, mbps: 100, phase: "snapshot", bytes: 6_000_000_000, percent: 60 });
  });
});

describe("mergePoints", () => {
  it("appends new points", () => {
    const a = [pt(0, 1), pt(3, 2)];
    const merged = mergePoints(a, [pt(6, 3), pt(9, 4)]);
    expect(merged.map((p) => p.elapsedSeconds)).toEqual([0, 3, 6, 9]);
  });
  it("ignores repeats and merges late points in order", () => {
    const a = [pt(0, 1), pt(3, 2), pt(9, 4)];
    const merged = mergePoints(a, [pt(3, 2), pt(6, 3)]);
    expect(merged.map((p) => p.elapsedSeconds)).toEqual([0, 3, 6, 9]);
  });
  it("returns the same array for an empty update", () => {
    const a = [pt(0, 1)];
    expect(mergePoints(a, [])).toBe(a);
  });
});

describe("peakRow", () => {
  it("finds the first highest point", () => {
    const rows = toChartRows([pt(0, 10), pt(10, 80), pt(20, 80), pt(30, 5)], timeAxisFor(30));
    expect(peakRow(rows)?.t).toBe(10);
    expect(peakRow([])).toBeUndefined();
  });
});

describe("speedFigures", () => {
  it("uses the stored record when there is one", () => {
    const record = create(PerformanceRecordSchema, {
      peakSpeedBps: 200_000_000n,
      averageSpeedBps: 150_000_000n,
      minSpeedBps: 10_000_000n,
      duration: { seconds: 600n, nanos: 0 },
      bytesTransferred: 90_000_000_000n,
    });
    expect(speedFigures([pt(0, 999)], record)).toEqual({
      peakBps: 200_000_000,
      averageBps: 150_000_000,
      minBps: 10_000_000,
      durationSeconds: 600,
      bytes: 90_000_000_000,
    });
  });
  it("derives live figures from points and the job counters", () => {
    const job = create(JobSchema, {
      bytesTransferred: 12_000_000_000n,
      duration: { seconds: 120n, nanos: 0 },
      transferSpeedBps: 130_000_000n,
    });
    const f = speedFigures([pt(0, 40), pt(60, 120), pt(120, 90)], undefined, job);
    expect(f.peakBps).toBe(130_000_000); // the live speed is above every stored point
    expect(f.minBps).toBe(40_000_000);
    // A 0 B/s start is not the minimum.
    expect(speedFigures([pt(0, 0), pt(60, 70)], undefined, job).minBps).toBe(70_000_000);
    expect(f.averageBps).toBe(100_000_000); // bytes / duration
    expect(f.durationSeconds).toBe(120);
  });
  it("copes with nothing", () => {
    expect(speedFigures([])).toEqual({ peakBps: 0, averageBps: 0, minBps: 0, durationSeconds: 0, bytes: 0 });
  });
});

describe("nice ticks", () => {
  it("picks 1/2/2.5/5 steps", () => {
    expect(niceStep(220)).toBe(50);
    expect(niceStep(7.1, 8)).toBe(1);
    expect(niceStep(0.9)).toBe(0.2);
    expect(niceStep(0)).toBe(1);
  });
  it("extends value axes past the maximum", () => {
    expect(niceTicks(212)).toEqual([0, 50, 100, 150, 200, 250]);
  });
  it("stops time axes at the last point", () => {
    expect(niceTicks(7.1, 8, false)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(niceTicks(0.9, 5, false)).toEqual([0, 0.2, 0.4, 0.6, 0.8]);
  });
});

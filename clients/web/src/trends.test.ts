import { describe, expect, it } from "vitest";
import { formatChange, trendVerdict, verdictLabel } from "./trends";

describe("trendVerdict", () => {
  it("needs at least four points", () => {
    expect(trendVerdict([1, 2, 3], "speed").verdict).toBe("insufficient");
    expect(trendVerdict([], "size").change).toBeNull();
  });
  it("speed: faster is improving", () => {
    expect(trendVerdict([100, 100, 130, 130], "speed").verdict).toBe("improving");
    expect(trendVerdict([130, 130, 100, 100], "speed").verdict).toBe("declining");
  });
  it("duration: shorter is improving", () => {
    expect(trendVerdict([600, 600, 400, 400], "duration").verdict).toBe("improving");
    expect(trendVerdict([400, 400, 600, 600], "duration").verdict).toBe("declining");
  });
  it("size: growing or shrinking", () => {
    expect(trendVerdict([10, 10, 12, 12], "size").verdict).toBe("growing");
    expect(trendVerdict([12, 12, 10, 10], "size").verdict).toBe("shrinking");
  });
  it("small changes are steady", () => {
    const r = trendVerdict([100, 101, 99, 100, 104, 103], "speed");
    expect(r.verdict).toBe("steady");
    expect(r.change).toBeCloseTo(0.0233, 3);
  });
  it("compares halves and skips the middle of an odd series", () => {
    const r = trendVerdict([10, 20, 999, 30, 40], "size");
    expect(r.olderMean).toBe(15);
    expect(r.newerMean).toBe(35);
    expect(r.verdict).toBe("growing");
  });
  it("handles a zero baseline", () => {
    expect(trendVerdict([0, 0, 0, 0], "size")).toMatchObject({ verdict: "steady", change: 0 });
    expect(trendVerdict([0, 0, 5, 5], "size")).toMatchObject({ verdict: "growing", change: null });
  });
  it("honours a custom threshold", () => {
    expect(trendVerdict([100, 100, 105, 105], "speed", 0.01).verdict).toBe("improving");
  });
});

describe("labels", () => {
  it("formats verdicts and changes", () => {
    expect(verdictLabel("improving")).toBe("Improving");
    expect(verdictLabel("insufficient")).toBe("Not enough data");
    expect(formatChange(0.123)).toBe("+12%");
    expect(formatChange(-0.08)).toBe("−8%");
    expect(formatChange(0.001)).toBe("±0%");
    expect(formatChange(null)).toBe("");
  });
});

describe("verdict and shown percentage agree", () => {
  it("treats a change that rounds to the threshold as steady", () => {
    const r = trendVerdict([100, 100, 110.4, 110.4], "speed");
    expect(formatChange(r.change)).toBe("+10%");
    expect(r.verdict).toBe("steady");
    expect(trendVerdict([100, 100, 110.6, 110.6], "speed").verdict).toBe("improving");
  });
});

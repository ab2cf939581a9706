import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { JobStatus, JobType, MachineInfoSchema } from "./gen/backwatch/v1/telemetry_pb";
import {
  durationSeconds,
  formatBytes,
  formatDuration,
  formatElapsedClock,
  formatMachineInfo,
  formatMemory,
  formatProgress,
  formatRate,
  formatRelative,
  formatSpeed,
  jobTypeLabel,
  num,
  statusKey,
  statusLabel,
  tsToDate,
} from "./format";

describe("formatBytes (decimal)", () => {
  it.each([
    [0, "0 B"],
    [999, "999 B"],
    [1000, "1.00 kB"],
    [1_500_000, "1.50 MB"],
    [12_345_678, "12.3 MB"],
    [1_000_000_000, "1.00 GB"],
    [123_456_789_012, "123 GB"],
    [4_500_000_000_000, "4.50 TB"],
  ])("%d bytes -> %s", (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
  it("takes bigint (uint64 fields)", () => {
    expect(formatBytes(8_000_000_000n)).toBe("8.00 GB");
  });
  it("never shows 1,000 of a unit", () => {
    expect(formatBytes(999_999_999)).toBe("1.00 GB");
    expect(formatBytes(999_499_999)).toBe("999 MB");
  });
  it("dashes nonsense", () => {
    expect(formatBytes(-1)).toBe("—");
    expect(formatBytes(NaN)).toBe("—");
  });
});

describe("formatSpeed (always MB/s)", () => {
  it.each([
    [0, "0 MB/s"],
    [420_000, "0.42 MB/s"],
    [5_000, "0.005 MB/s"],
    [12_340_000, "12.3 MB/s"],
    [123_400_000, "123 MB/s"],
    [1_234_000_000, "1,234 MB/s"],
  ])("%d B/s -> %s", (bps, text) => {
    expect(formatSpeed(bps)).toBe(text);
  });
  it("takes bigint", () => expect(formatSpeed(150_000_000n)).toBe("150 MB/s"));
});

describe("formatDuration", () => {
  it.each([
    [0, "0 s"],
    [45.4, "45 s"],
    [60, "1 min"],
    [725, "12 min 5 s"],
    [3600, "1 h"],
    [2 * 3600 + 14 * 60 + 30, "2 h 14 min"],
    [86400 * 3 + 3600 * 4, "3 d 4 h"],
  ])("%d s -> %s", (s, text) => expect(formatDuration(s)).toBe(text));
  it("dashes undefined and negatives", () => {
    expect(formatDuration(undefined)).toBe("—");
    expect(formatDuration(-5)).toBe("—");
  });
});

describe("formatElapsedClock", () => {
  it.each([
    [5, "0:05"],
    [725, "12:05"],
    [3723, "1:02:03"],
  ])("%d -> %s", (s, text) => expect(formatElapsedClock(s)).toBe(text));
});

describe("rates and progress", () => {
  it("formats 0-1 fractions", () => {
    expect(formatRate(1)).toBe("100%");
    expect(formatRate(0)).toBe("0%");
    expect(formatRate(0.925)).toBe("92.5%");
    expect(formatRate(2 / 3)).toBe("66.7%");
    expect(formatRate(undefined)).toBe("—");
  });
  it("formats 0-100 progress", () => {
    expect(formatProgress(42)).toBe("42%");
    expect(formatProgress(99.54)).toBe("99.5%");
  });
});

describe("formatRelative", () => {
  const now = new Date("2026-01-10T12:00:00Z");
  it.each([
    [10, "just now"],
    [5 * 60, "5 min ago"],
    [3 * 3600, "3 h ago"],
    [2 * 86400, "2 d ago"],
    [-4 * 60, "in 4 min"],
  ])("%d s before now -> %s", (ago, text) => {
    expect(formatRelative(new Date(now.getTime() - ago * 1000), now)).toBe(text);
  });
});

describe("protobuf helpers", () => {
  it("converts Timestamp and Duration", () => {
    expect(tsToDate({ seconds: 1_700_000_000n, nanos: 500_000_000 } as never)?.getTime()).toBe(1_700_000_000_500);
    expect(tsToDate(undefined)).toBeUndefined();
    expect(durationSeconds({ seconds: 90n, nanos: 250_000_000 } as never)).toBe(90.25);
    expect(durationSeconds(undefined)).toBe(0);
    expect(num(5n)).toBe(5);
    expect(num(undefined)).toBe(0);
  });
});

describe("labels", () => {
  it("names statuses and types", () => {
    expect(statusLabel(JobStatus.SUCCEEDED)).toBe("Succeeded");
    expect(statusLabel(JobStatus.ABANDONED)).toBe("Abandoned");
    expect(statusKey(JobStatus.RUNNING)).toBe("running");
    expect(statusLabel(JobStatus.UNSPECIFIED)).toBe("Unknown");
    expect(jobTypeLabel(JobType.FULL)).toBe("Full");
    expect(jobTypeLabel(JobType.INCREMENTAL)).toBe("Incremental");
  });
});

describe("formatMachineInfo", () => {
  it("builds the info line", () => {
    const info = create(MachineInfoSchema, { cpuCores: 2, memoryBytes: 8_000_000_000n, diskCount: 2, os: "Debian 12" });
    expect(formatMachineInfo(info)).toBe("2 cores, 8 GB, 2 disks, Debian 12");
  });
  it("uses singulars and skips unknown parts", () => {
    const info = create(MachineInfoSchema, { cpuCores: 1, diskCount: 1 });
    expect(formatMachineInfo(info)).toBe("1 core, 1 disk");
    expect(formatMachineInfo(undefined)).toBe("");
  });
  it("shows memory in decimal units", () => {
    expect(formatMemory(8_589_934_592)).toBe("8.59 GB");
    expect(formatMemory(16_000_000_000)).toBe("16 GB");
    expect(formatMemory(512_000_000)).toBe("512 MB");
  });
});

// A stand-in hub for GUI work without the Rust hub: serves dist/ and the read side of
// TelemetryService over grpc-web (and Connect/gRPC) with made-up machines, history and
// live jobs. Usage: npm run build && node dev/mock-hub.mjs [--port 8099] [--interval 3]
// Not used by tests against the real hub; behaviour follows the proto comments.
import { createServer } from "node:http";
import { readFile, stat } from "node:fs/promises";
import { extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Code, ConnectError } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { timestampFromMs as tsMs } from "@bufbuild/protobuf/wkt";
const timestampFromMs = (ms) => tsMs(Math.round(ms));
import { JobStatus, JobType, TelemetryService } from "../src/gen/backwatch/v1/telemetry_pb.js";

const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const PORT = Number(arg("port", process.env.PORT ?? 8099));
const INTERVAL_S = Number(arg("interval", 3));
const DIST = resolve(fileURLToPath(new URL("../dist", import.meta.url)));

// Deterministic pseudo-random numbers so screenshots are stable.
let seed = 42;
const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);

const GB = 1e9;
const dur = (s) => ({ seconds: BigInt(Math.floor(s)), nanos: Math.round((s % 1) * 1e9) });
const now = () => Date.now();

const machines = [
  { name: "db-prod-01", info: { cpuCores: 8, memoryBytes: 32_000_000_000n, diskCount: 4, os: "Debian 12" }, base: 180 },
  { name: "fileserver-02", info: { cpuCores: 4, memoryBytes: 16_000_000_000n, diskCount: 6, os: "Windows Server 2022" }, base: 120 },
  { name: "mail-01", info: { cpuCores: 2, memoryBytes: 8_000_000_000n, diskCount: 2, os: "Debian 12" }, base: 90 },
  { name: "web-frontend-03", info: { cpuCores: 2, memoryBytes: 4_000_000_000n, diskCount: 1, os: "Ubuntu 24.04" }, base: 140 },
  { name: "build-runner", info: { cpuCores: 16, memoryBytes: 64_000_000_000n, diskCount: 2, os: "Rocky Linux 9" }, base: 220 },
];
const jobs = new Map(); // id -> { job, points, record }

function curve(total, baseMBps, seconds, step, finished = true) {
  const pts = [];
  let bytes = 0;
  let speed = baseMBps * 0.4;
  for (let t = 0; t <= seconds; t += step) {
    const phase = t < Math.min(30, seconds * 0.05) ? "snapshot" : finished && t > seconds * 0.95 ? "finalize" : "transfer";
    const target = phase === "transfer" ? baseMBps * (0.8 + 0.4 * rnd()) : baseMBps * 0.25;
    speed = speed * 0.6 + target * 0.4;
    bytes = Math.min(total, bytes + speed * 1e6 * step);
    pts.push({ elapsedSeconds: t, speedBps: BigInt(Math.round(speed * 1e6)), bytesTransferred: BigInt(Math.round(bytes)), progressPercent: (bytes / total) * 100, phase });
  }
  return pts;
}

function record(points, durationS, bytes) {
  const speeds = points.map((p) => Number(p.speedBps));
  return {
    formatVersion: 1,
    peakSpeedBps: BigInt(Math.max(...speeds)),
    averageSpeedBps: BigInt(Math.round(bytes / Math.max(1, durationS))),
    minSpeedBps: BigInt(Math.min(...speeds)),
    duration: dur(durationS),
    bytesTransferred: BigInt(Math.round(bytes)),
    snapshotCount: points.length * 3,
    points,
  };
}

for (const m of machines) {
  for (let d = 14; d >= 1; d--) {
    const full = d % 7 === 0;
    const total = (full ? 300 : 20 + 40 * rnd()) * GB * (m.base / 150) * (1 + (14 - d) * 0.01);
    const speed = m.base * (0.85 + 0.3 * rnd());
    const seconds = total / (speed * 1e6);
    const r = rnd();
    const status = r < 0.08 ? JobStatus.FAILED : r < 0.12 ? JobStatus.CANCELLED : JobStatus.SUCCEEDED;
    const frac = status === JobStatus.SUCCEEDED ? 1 : 0.3 + 0.5 * rnd();
    const start = now() - d * 86400_000 + 3600_000 * (rnd() * 2);
    const pts = curve(total, speed, seconds * frac, Math.max(10, Math.round(seconds / 120)));
    const bytes = Number(pts[pts.length - 1].bytesTransferred);
    const id = `${m.name}-${new Date(start).toISOString().slice(0, 10)}-${full ? "full" : "incr"}`;
    const elapsed = pts[pts.length - 1].elapsedSeconds;
    jobs.set(id, {
      job: {
        jobId: id, machine: m.name, jobType: full ? JobType.FULL : JobType.INCREMENTAL, status,
        startedAt: timestampFromMs(start), endedAt: timestampFromMs(start + elapsed * 1000), phase: pts[pts.length - 1].phase,
        progressPercent: (bytes / total) * 100, bytesTransferred: BigInt(Math.round(bytes)), totalBytes: BigInt(Math.round(total)),
        transferSpeedBps: 0n, errorMessage: status === JobStatus.FAILED ? "VSS snapshot failed: writer 'SqlServerWriter' timed out" : status === JobStatus.CANCELLED ? "Cancelled by operator" : "",
        lastReportAt: timestampFromMs(start + elapsed * 1000), duration: dur(elapsed),
      },
      record: record(pts, elapsed, bytes),
    });
  }
}

// Live jobs: two machines back up right now, started a few minutes ago.
const live = [];
function startLive(m, agoS, totalGB) {
  const start = now() - agoS * 1000;
  const total = totalGB * GB;
  const id = `${m.name}-live-${Math.round(start / 1000)}`;
  const pts = curve(total, m.base, agoS, 10, false);
  const entry = { m, start, total, speed: Number(pts[pts.length - 1].speedBps) / 1e6, points: pts, job: null, record: undefined };
  entry.job = liveJob(entry, JobStatus.RUNNING);
  jobs.set(id, entry);
  entry.id = id;
  live.push(entry);
}
function liveJob(e, status) {
  const last = e.points[e.points.length - 1];
  const elapsed = last.elapsedSeconds;
  const bytes = Number(last.bytesTransferred);
  const pct = (bytes / e.total) * 100;
  const rate = bytes / Math.max(1, elapsed);
  const eta = pct >= 5 && elapsed >= 60 ? timestampFromMs(e.start + (elapsed + (e.total - bytes) / rate) * 1000) : undefined;
  return {
    jobId: e.id ?? "", machine: e.m.name, jobType: JobType.INCREMENTAL, status,
    startedAt: timestampFromMs(e.start), endedAt: status === JobStatus.RUNNING ? undefined : timestampFromMs(e.start + elapsed * 1000),
    phase: last.phase, progressPercent: pct, bytesTransferred: last.bytesTransferred, totalBytes: BigInt(Math.round(e.total)),
    transferSpeedBps: last.speedBps, errorMessage: "", lastReportAt: timestampFromMs(now()),
    estimatedCompletion: status === JobStatus.RUNNING ? eta : undefined, duration: dur(elapsed),
  };
}
startLive(machines[0], 420, 160);
startLive(machines[2], 150, 40);
for (const e of live) e.job.jobId = e.id;

setInterval(() => {
  for (const e of live) {
    if (e.job.status !== JobStatus.RUNNING) continue;
    const last = e.points[e.points.length - 1];
    const t = (now() - e.start) / 1000;
    const target = e.m.base * (0.8 + 0.4 * rnd());
    e.speed = e.speed * 0.6 + target * 0.4;
    const bytes = Math.min(e.total, Number(last.bytesTransferred) + e.speed * 1e6 * (t - last.elapsedSeconds));
    const phase = bytes >= e.total ? "finalize" : "transfer";
    e.points.push({ elapsedSeconds: t, speedBps: BigInt(Math.round(e.speed * 1e6)), bytesTransferred: BigInt(Math.round(bytes)), progressPercent: (bytes / e.total) * 100, phase });
    const done = bytes >= e.total;
    e.job = liveJob(e, done ? JobStatus.SUCCEEDED : JobStatus.RUNNING);
    if (done) e.record = record(e.points, t, bytes);
  }
}, 1000);

const allJobs = () => [...jobs.values()].map((e) => e.job);
const byNewest = (a, b) => Number(b.startedAt.seconds - a.startedAt.seconds);
const ended = (j) => j.status !== JobStatus.RUNNING && j.status !== JobStatus.UNSPECIFIED;

function page(list, size, token) {
  const off = token ? Number(token) : 0;
  if (!Number.isInteger(off) || off < 0) throw new ConnectError("page_token: invalid", Code.InvalidArgument);
  const n = size > 0 ? Math.min(size, 500) : 50;
  return { items: list.slice(off, off + n), next: off + n < list.length ? String(off + n) : "" };
}

const routes = (router) =>
  router.service(TelemetryService, {
    reportProgress() {
      throw new ConnectError("the mock hub is read-only", Code.Unimplemented);
    },
    getHistory({ jobId }) {
      const e = jobs.get(jobId);
      if (!e) throw new ConnectError(`job ${jobId} not found`, Code.NotFound);
      const rec = e.record ?? record(e.points, e.points.at(-1).elapsedSeconds, Number(e.points.at(-1).bytesTransferred));
      return { job: e.job, performance: rec };
    },
    async *watchJob({ jobId }, ctx) {
      const e = jobs.get(jobId);
      if (!e) throw new ConnectError(`job ${jobId} not found`, Code.NotFound);
      let sent = e.points ? e.points.length : 0;
      yield { job: e.job, points: e.points ?? e.record.points, performance: e.job.status === JobStatus.RUNNING ? undefined : e.record };
      while (e.job.status === JobStatus.RUNNING) {
        await new Promise((r) => setTimeout(r, INTERVAL_S * 1000));
        if (ctx.signal.aborted) return;
        const fresh = e.points.slice(sent);
        sent = e.points.length;
        yield { job: e.job, points: fresh, performance: e.job.status === JobStatus.RUNNING ? undefined : e.record };
      }
    },
    listMachines({ pageSize, pageToken }) {
      const list = machines.map((m) => {
        const js = allJobs().filter((j) => j.machine === m.name).sort(byNewest);
        const done = js.filter(ended);
        return {
          machine: { name: m.name, info: m.info, firstSeenAt: js.at(-1)?.startedAt, lastSeenAt: timestampFromMs(now()) },
          lastJob: js[0],
          successRate: done.length ? done.filter((j) => j.status === JobStatus.SUCCEEDED).length / done.length : 0,
          totalJobs: js.length,
        };
      });
      const { items, next } = page(list, pageSize, pageToken);
      return { machines: items, nextPageToken: next };
    },
    listJobs({ machine, pageSize, pageToken }) {
      const list = [...jobs.values()]
        .filter((e) => !machine || e.job.machine === machine)
        .sort((a, b) => byNewest(a.job, b.job))
        .map((e) => ({ job: e.job, performance: e.job.status === JobStatus.RUNNING ? undefined : { ...e.record, points: [] } }));
      const { items, next } = page(list, pageSize, pageToken);
      return { jobs: items, nextPageToken: next };
    },
    getMachineSummary({ machine }) {
      const m = machines.find((x) => x.name === machine);
      if (!m) throw new ConnectError(`machine ${machine} not found`, Code.NotFound);
      const es = [...jobs.values()].filter((e) => e.job.machine === machine);
      const js = es.map((e) => e.job);
      const count = (s) => js.filter((j) => j.status === s).length;
      const ok = es.filter((e) => e.job.status === JobStatus.SUCCEEDED);
      const done = js.filter(ended).length;
      const avg = (f) => (ok.length ? ok.reduce((a, e) => a + f(e), 0) / ok.length : 0);
      const trend = es
        .filter((e) => ended(e.job))
        .sort((a, b) => -byNewest(a.job, b.job))
        .slice(-30)
        .map((e) => ({
          jobId: e.job.jobId, startedAt: e.job.startedAt, jobType: e.job.jobType, status: e.job.status,
          bytesTransferred: e.job.bytesTransferred, duration: e.job.duration,
          averageSpeedBps: e.record.averageSpeedBps, peakSpeedBps: e.record.peakSpeedBps,
        }));
      return {
        machine: { name: m.name, info: m.info, lastSeenAt: timestampFromMs(now()) },
        totalJobs: js.length, runningJobs: count(JobStatus.RUNNING), succeededJobs: count(JobStatus.SUCCEEDED),
        failedJobs: count(JobStatus.FAILED), cancelledJobs: count(JobStatus.CANCELLED), abandonedJobs: count(JobStatus.ABANDONED),
        successRate: done ? count(JobStatus.SUCCEEDED) / done : 0,
        averageBytes: BigInt(Math.round(avg((e) => Number(e.job.bytesTransferred)))),
        averageDuration: dur(avg((e) => Number(e.job.duration.seconds))),
        averageSpeedBps: BigInt(Math.round(avg((e) => Number(e.record.averageSpeedBps)))),
        trend,
      };
    },
  });

const grpc = connectNodeAdapter({ routes });
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png" };

createServer(async (req, res) => {
  if (req.url?.startsWith("/backwatch.v1.TelemetryService/")) return grpc(req, res);
  const path = normalize(decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname));
  let file = join(DIST, path);
  if (!file.startsWith(DIST)) file = join(DIST, "index.html");
  try {
    if (!(await stat(file)).isFile()) throw new Error();
  } catch {
    file = join(DIST, "index.html");
  }
  try {
    const body = await readFile(file);
    res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" });
    res.end(body);
  } catch {
    res.writeHead(404).end("dist/ not built: run npm run build");
  }
}).listen(PORT, "127.0.0.1", () => console.log(`mock hub listening on http://127.0.0.1:${PORT}`));

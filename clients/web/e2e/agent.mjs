// A test backup agent: reports jobs over native gRPC (HTTP/2 without TLS) like a real agent.
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { JobStatus, JobType, TelemetryService } from "../src/gen/backwatch/v1/telemetry_pb.js";

export { JobStatus, JobType };

export function createAgent(baseUrl, { token } = {}) {
  const interceptors = token
    ? [(next) => (req) => {
        req.header.set("authorization", `Bearer ${token}`);
        return next(req);
      }]
    : [];
  const client = createClient(TelemetryService, createGrpcTransport({ baseUrl, interceptors }));
  const sequences = new Map();
  /** One report; sequence increases per job; sampledAtMs is the agent's clock. */
  async function report(jobId, fields, sampledAtMs = Date.now()) {
    const sequence = (sequences.get(jobId) ?? 0n) + 1n;
    sequences.set(jobId, sequence);
    return client.reportProgress({ jobId, sequence, sampledAt: timestampFromMs(Math.round(sampledAtMs)), ...fields });
  }

  /**
   * A whole finished job in the past: a first report, progress every stepS seconds, and the
   * terminal report. Returns the bytes transferred.
   */
  async function finishedJob({ jobId, machine, machineInfo, jobType, startMs, seconds, totalBytes, mbps, status = JobStatus.SUCCEEDED, errorMessage = "", stepS = 60 }) {
    const end = status === JobStatus.SUCCEEDED ? 1 : 0.4;
    const total = BigInt(totalBytes);
    await report(jobId, { machine, machineInfo, jobType, status: JobStatus.RUNNING, phase: "snapshot", totalBytes: total }, startMs);
    let bytes = 0;
    for (let t = stepS; t < seconds * end; t += stepS) {
      const speed = mbps * 1e6 * (0.8 + 0.4 * ((t / stepS) % 3) / 2);
      bytes = Math.min(Number(totalBytes), bytes + speed * stepS);
      await report(jobId, {
        status: JobStatus.RUNNING,
        phase: "transfer",
        bytesTransferred: BigInt(Math.round(bytes)),
        totalBytes: total,
        progressPercent: (bytes / Number(totalBytes)) * 100,
        transferSpeedBps: BigInt(Math.round(speed)),
      }, startMs + t * 1000);
    }
    if (status === JobStatus.SUCCEEDED) bytes = Number(totalBytes);
    await report(jobId, {
      status,
      phase: status === JobStatus.SUCCEEDED ? "done" : "transfer",
      bytesTransferred: BigInt(Math.round(bytes)),
      totalBytes: total,
      progressPercent: (bytes / Number(totalBytes)) * 100,
      errorMessage,
    }, startMs + seconds * end * 1000);
    return bytes;
  }

  return { client, report, finishedJob };
}

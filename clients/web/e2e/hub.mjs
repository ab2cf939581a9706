// Starts the real hub binary for end-to-end tests and stops it again.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const WEB = resolve(fileURLToPath(new URL("..", import.meta.url)));
export const DIST = join(WEB, "dist");
export const HUB_BIN = resolve(WEB, process.env.BACKWATCH_BIN ?? "../../target/debug/backwatch");

/**
 * Runs `backwatch serve` on a free port (or the given listen address) with a SQLite file in dir.
 * Resolves once the hub logs "listening on http://127.0.0.1:PORT" on stdout or stderr.
 */
export async function startHub({ dir, listen = "127.0.0.1:0", extraArgs = [], timeoutMs = 60_000 } = {}) {
  if (!existsSync(HUB_BIN)) throw new Error(`hub binary ${HUB_BIN} is missing: cargo build (or set BACKWATCH_BIN)`);
  if (!existsSync(join(DIST, "index.html"))) throw new Error(`${DIST} is not built: npm run build first`);
  const args = [
    "serve",
    "--listen", listen,
    "--database-url", `sqlite://${join(dir, "e2e.db")}`,
    "--ui-dir", DIST,
    ...extraArgs,
  ];
  const child = spawn(HUB_BIN, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "info" } });
  const log = [];
  const url = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`hub did not log "listening on" within ${timeoutMs} ms:\n${log.join("")}`)), timeoutMs);
    const onData = (chunk) => {
      const text = chunk.toString();
      log.push(text);
      if (process.env.E2E_HUB_LOG) process.stderr.write(`[hub] ${text}`);
      const m = /listening on (http:\/\/127\.0\.0\.1:(\d+))/.exec(log.join(""));
      if (m) {
        clearTimeout(timer);
        resolveUrl(m[1]);
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`hub exited early (code ${code}, signal ${signal}):\n${log.join("")}`));
    });
  });
  child.removeAllListeners("exit");
  return { url, port: Number(new URL(url).port), child, log };
}

/** The hub must answer a browser's plain HTTP/1.1 GET with the GUI (index.html fallback). */
export async function checkServesGui(url) {
  for (const path of ["/", "/?machine=x&tab=performance"]) {
    const res = await fetch(new URL(path, url));
    const body = await res.text();
    if (res.status !== 200 || !body.includes('<div id="root">')) {
      throw new Error(
        `GET ${path} on the hub answered HTTP ${res.status} ${JSON.stringify(body.slice(0, 120))} instead of dist/index.html: ` +
          "the hub does not serve the GUI to browsers (HTTP/1.1). With tonic-web's GrpcWebLayer on the whole router, " +
          "every HTTP/1.1 request that is not grpc-web gets 400 Bad Request; apply it to the gRPC services only.",
      );
    }
  }
}

/** SIGTERM, then SIGKILL if the hub has not exited after graceMs. */
export async function stopHub(hub, graceMs = 10_000) {
  const { child } = hub;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}

export function makeTempDir() {
  return mkdtempSync(join(tmpdir(), "backwatch-e2e-"));
}

export function removeDir(dir) {
  rmSync(dir, { recursive: true, force: true });
}

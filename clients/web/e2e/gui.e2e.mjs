// End-to-end: the real hub binary, a test agent reporting over gRPC, and the built GUI in
// headless Chromium talking grpc-web to the same hub. Run with `npm run e2e` after
// `npm run build` and a cargo build of the hub (BACKWATCH_BIN overrides the binary path).
// Waits poll with generous limits; nothing asserts on a fixed sleep.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { launchChromium, waitFor } from "./browser.mjs";
import { checkServesGui, makeTempDir, removeDir, startHub, stopHub } from "./hub.mjs";
import { createAgent, JobStatus, JobType } from "./agent.mjs";

const MACHINE = "e2e-db-01";
const OTHER = "e2e-web-02";
const INFO = { cpuCores: 2, memoryBytes: 8_000_000_000n, diskCount: 2, os: "Debian 12" };
const LIVE_JOB = "e2e-live-1";
const T = { timeout: 180_000 };
const SLOW = { timeoutMs: 60_000 };

let dir, hub, agent, browser, page, live;
const seeded = [];

/** Reports a running job every second (agent clock = now) until finish() or stop(). */
function startLiveJob(jobId) {
  const total = 50_000_000_000;
  let bytes = 0;
  let tick = 0;
  let stopped = false;
  let inFlight = Promise.resolve();
  const first = agent.report(jobId, {
    machine: MACHINE,
    machineInfo: INFO,
    jobType: JobType.INCREMENTAL,
    status: JobStatus.RUNNING,
    phase: "snapshot",
    totalBytes: BigInt(total),
  });
  const timer = setInterval(() => {
    if (stopped) return;
    tick++;
    const speed = 120e6 + 40e6 * Math.sin(tick / 3);
    bytes = Math.min(total - 1, bytes + speed);
    inFlight = agent
      .report(jobId, {
        status: JobStatus.RUNNING,
        phase: tick < 3 ? "snapshot" : "transfer",
        bytesTransferred: BigInt(Math.round(bytes)),
        totalBytes: BigInt(total),
        progressPercent: (bytes / total) * 100,
        transferSpeedBps: BigInt(Math.round(speed)),
      })
      .catch(() => {}); // the hub may be restarting; the next report goes on
  }, 1000);
  return {
    first,
    stop() {
      stopped = true;
      clearInterval(timer);
    },
    async finish() {
      this.stop();
      await inFlight;
      return agent.report(jobId, {
        status: JobStatus.SUCCEEDED,
        phase: "done",
        bytesTransferred: BigInt(Math.round(bytes)),
        totalBytes: BigInt(Math.round(bytes)),
        progressPercent: 100,
      });
    },
  };
}

const attr = (sel, name) => page.evaluate(([s, n]) => document.querySelector(s)?.getAttribute(n) ?? null, [sel, name]);
const text = (sel) => page.evaluate((s) => document.querySelector(s)?.textContent ?? null, sel);
const pointCount = async () => Number((await attr("[data-testid=speed-chart]", "data-point-count")) ?? -1);

// The steps build on each other: after the first failure the rest are skipped, not timed out.
let failed = false;
function step(name, fn) {
  it(name, T, async (t) => {
    if (failed) return t.skip("an earlier step failed");
    try {
      await fn();
    } catch (e) {
      failed = true;
      throw e;
    }
  });
}

describe("backwatch GUI against the real hub", () => {
  before(async () => {
    dir = makeTempDir();
    hub = await startHub({ dir });
    agent = createAgent(hub.url);
    const now = Date.now();
    // History within the last 24 h (the hub accepts sampled_at up to 24 h old).
    const jobs = [
      { jobId: "e2e-hist-1", jobType: JobType.FULL, hoursAgo: 20, seconds: 900, totalBytes: 90e9, mbps: 100 },
      { jobId: "e2e-hist-2", jobType: JobType.INCREMENTAL, hoursAgo: 16, seconds: 600, totalBytes: 30e9, mbps: 50 },
      { jobId: "e2e-hist-3", jobType: JobType.INCREMENTAL, hoursAgo: 12, seconds: 540, totalBytes: 31e9, mbps: 57 },
      { jobId: "e2e-hist-4", jobType: JobType.INCREMENTAL, hoursAgo: 8, seconds: 600, totalBytes: 20e9, mbps: 33, status: JobStatus.FAILED, errorMessage: "disk quota exceeded on repository" },
      { jobId: "e2e-hist-5", jobType: JobType.INCREMENTAL, hoursAgo: 4, seconds: 480, totalBytes: 32e9, mbps: 66 },
    ];
    for (const j of jobs) {
      await agent.finishedJob({ ...j, machine: MACHINE, machineInfo: INFO, startMs: now - j.hoursAgo * 3600_000 });
      seeded.push(j.jobId);
    }
    await agent.finishedJob({ jobId: "e2e-other-1", machine: OTHER, jobType: JobType.FULL, startMs: now - 3 * 3600_000, seconds: 300, totalBytes: 10e9, mbps: 40 });
    live = startLiveJob(LIVE_JOB);
    await live.first;
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on("pageerror", (e) => console.error("page error:", e.message));
  }, { timeout: 180_000 });

  after(async () => {
    live?.stop();
    await browser?.close().catch(() => {});
    if (hub) await stopHub(hub);
    if (dir) removeDir(dir);
  });

  step("gets the GUI from the hub", async () => {
    await checkServesGui(hub.url);
  });

  step("lists machines with the running job's live progress", async () => {
    await page.goto(hub.url);
    const row = `tr[data-machine="${MACHINE}"]`;
    await page.waitForSelector(row, { timeout: 60_000 });
    await page.waitForSelector(`tr[data-machine="${OTHER}"]`, { timeout: 60_000 });
    await waitFor("the running status on the machine row", async () => (await text(`${row} [data-status]`)) === "Running", SLOW);
    await waitFor("a progress bar on the machine row", async () => (await text(`${row} [data-testid=row-progress]`))?.includes("%"), SLOW);
    assert.match(await text(`${row} th`), /2 cores, 8 GB, 2 disks, Debian 12/);
    assert.equal(await text(`tr[data-machine="${OTHER}"] [data-status]`), "Succeeded");
  });

  step("opens the machine modal on the Summary tab with KPIs and history", async () => {
    await page.click(`tr[data-machine="${MACHINE}"] .row-link`);
    const dialog = page.getByRole("dialog", { name: MACHINE });
    await dialog.waitFor({ timeout: 30_000 });
    assert.equal(await dialog.getAttribute("aria-modal"), "true");
    assert.match(page.url(), /machine=e2e-db-01/);
    await waitFor("machine info line", async () => (await text("[data-testid=machine-info]"))?.includes("2 cores, 8 GB, 2 disks, Debian 12"), SLOW);
    // 5 seeded + 1 running; 4 of 5 ended succeeded.
    await waitFor("total backups = 6", async () => (await text("[data-testid=kpi-total] .kpi-value")) === "6", SLOW);
    assert.equal(await text("[data-testid=kpi-success] .kpi-value"), "80%");
    assert.notEqual(await text("[data-testid=kpi-size] .kpi-value"), "—");
    assert.notEqual(await text("[data-testid=kpi-duration] .kpi-value"), "—");
    await waitFor("every job in the history table", async () => {
      const ids = await page.evaluate(() => [...document.querySelectorAll("[data-testid=history-table] tr[data-job]")].map((r) => r.getAttribute("data-job")));
      return [...seeded, LIVE_JOB].every((id) => ids.includes(id)) && ids[0] === LIVE_JOB;
    }, SLOW);
    assert.equal(await text('tr[data-job="e2e-hist-4"] [data-status]'), "Failed");
    assert.equal(await text('tr[data-job="e2e-hist-1"] td'), "Full");
  });

  step("shows the running job's chart growing live on the Performance tab (keyboard tabs)", async () => {
    await page.getByRole("tab", { name: "Summary" }).focus();
    await page.keyboard.press("ArrowRight");
    await waitFor("Performance tab selected", async () => (await attr("[role=tab][aria-selected=true]", "id"))?.endsWith("performance"), SLOW);
    assert.match(page.url(), /tab=performance/);
    await waitFor("the live job selected", async () => (await page.inputValue("[data-testid=job-select]")) === LIVE_JOB, SLOW);
    const label = await page.evaluate(() => document.querySelector("[data-testid=job-select] option:checked")?.textContent);
    assert.match(label, /live/);
    await waitFor("live chart", async () => (await attr("[data-testid=speed-chart]", "data-live")) === "true" && (await pointCount()) >= 2, SLOW);
    const before = await pointCount();
    await waitFor(`more than ${before} points`, async () => (await pointCount()) > before, SLOW);
    assert.match(await text("[data-testid=live-progress]"), /%$/);
    assert.match(await text("[data-testid=live-phase]"), /snapshot|transfer/);
    assert.match(await text("[data-testid=fig-peak]"), /MB\/s/);
    // The chart is an SVG area with a path, an average line and axis labels with units.
    assert.ok(await page.locator("[data-testid=speed-chart] svg .recharts-area-area").count());
    assert.match(await text("[data-testid=speed-chart] svg"), /MB\/s/);
    assert.match(await text("[data-testid=speed-chart] svg"), /Elapsed time/);
  });

  step("shows outcomes and trends on the Analytics tab", async () => {
    await page.keyboard.press("ArrowRight");
    await waitFor("Analytics tab selected", async () => (await attr("[role=tab][aria-selected=true]", "id"))?.endsWith("analytics"), SLOW);
    await page.waitForSelector("[data-testid=success-donut]", { timeout: 30_000 });
    assert.match(await text("[data-testid=donut-succeeded]"), /Succeeded\s*4/);
    assert.match(await text("[data-testid=donut-failed]"), /Failed\s*1/);
    assert.match(await text("[data-testid=donut-other]"), /0$/);
    assert.equal(await text("[data-testid=donut-rate]"), "80%");
    for (const kind of ["size", "duration", "speed"]) {
      const v = await attr(`[data-testid=trend-${kind}]`, "data-verdict");
      assert.ok(["improving", "declining", "steady", "growing", "shrinking", "insufficient"].includes(v), `${kind}: ${v}`);
    }
  });

  step("keeps the live chart going through a hub restart (stream reopened)", async () => {
    await page.keyboard.press("ArrowLeft");
    await waitFor("live chart again", async () => (await attr("[data-testid=speed-chart]", "data-live")) === "true", SLOW);
    const port = hub.port;
    await stopHub(hub);
    await waitFor("the unreachable banner", async () => (await page.locator("[data-testid=hub-banner]").count()) === 1, SLOW);
    hub = await startHub({ dir, listen: `127.0.0.1:${port}` });
    await waitFor("the banner to go away", async () => (await page.locator("[data-testid=hub-banner]").count()) === 0, { timeoutMs: 90_000 });
    await waitFor("the live stream back", async () => /^live/.test((await text("[data-testid=live-indicator]")) ?? ""), { timeoutMs: 90_000 });
    const n = await pointCount();
    await waitFor(`more than ${n} points after the restart`, async () => (await pointCount()) > n, SLOW);
    assert.equal(await attr("[data-testid=speed-chart]", "data-live"), "true");
  });

  step("shows the final record once the agent reports success", async () => {
    const res = await live.finish();
    assert.equal(res.jobStatus, JobStatus.SUCCEEDED);
    await waitFor("final record on the chart", async () =>
      (await attr("[data-testid=speed-chart]", "data-final")) === "true" &&
      (await attr("[data-testid=speed-chart]", "data-live")) === "false" &&
      (await pointCount()) >= 2, SLOW);
    await waitFor("succeeded status", async () => (await text(".perf-jobmeta [data-status]")) === "Succeeded", SLOW);
    assert.equal(await page.locator("[data-testid=live-strip]").count(), 0);
  });

  step("reopens the same view from its URL, and Esc closes the dialog", async () => {
    const url = page.url();
    assert.match(url, /job=e2e-live-1/);
    const second = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    try {
      await second.goto(url);
      await second.getByRole("dialog", { name: MACHINE }).waitFor({ timeout: 30_000 });
      await waitFor("performance tab from the URL", async () =>
        (await second.evaluate(() => document.querySelector("[role=tab][aria-selected=true]")?.textContent)) === "Performance", SLOW);
      await waitFor("final chart from the URL", async () =>
        (await second.evaluate(() => document.querySelector("[data-testid=speed-chart]")?.getAttribute("data-final"))) === "true", SLOW);
      assert.equal(await second.inputValue("[data-testid=job-select]"), LIVE_JOB);
    } finally {
      await second.close();
    }
    await page.keyboard.press("Escape");
    await waitFor("dialog closed", async () => (await page.getByRole("dialog").count()) === 0, SLOW);
    assert.doesNotMatch(page.url(), /machine=/);
  });

  step("shows a banner while the hub is down and recovers when it is back", async () => {
    const port = hub.port;
    await stopHub(hub);
    await waitFor("the unreachable banner", async () => (await page.locator("[data-testid=hub-banner]").count()) === 1, SLOW);
    hub = await startHub({ dir, listen: `127.0.0.1:${port}` });
    await waitFor("the banner to go away", async () => (await page.locator("[data-testid=hub-banner]").count()) === 0, { timeoutMs: 90_000 });
    await waitFor("machines listed again", async () => (await text(`tr[data-machine="${MACHINE}"] [data-status]`)) === "Succeeded", SLOW);
  });
});

describe("backwatch GUI against a hub with bearer tokens", () => {
  let tdir, thub, tbrowser;
  before(async () => {
    tdir = makeTempDir();
    thub = await startHub({ dir: tdir, extraArgs: ["--viewer-token", "e2e-viewer", "--agent-token", "e2e-agent"] });
    const tagent = createAgent(thub.url, { token: "e2e-agent" });
    await tagent.finishedJob({ jobId: "e2e-tok-1", machine: "e2e-secure-01", jobType: JobType.FULL, startMs: Date.now() - 3600_000, seconds: 300, totalBytes: 5e9, mbps: 20 });
    tbrowser = await launchChromium();
  }, { timeout: 180_000 });

  after(async () => {
    await tbrowser?.close().catch(() => {});
    if (thub) await stopHub(thub);
    if (tdir) removeDir(tdir);
  });

  it("asks for a viewer token, rejects a wrong one and shows the machines with the right one", T, async () => {
    await checkServesGui(thub.url);
    const p = await tbrowser.newPage({ viewport: { width: 1280, height: 800 } });
    await p.goto(thub.url);
    await p.waitForSelector("[data-testid=token-prompt]", { timeout: 60_000 });
    assert.match(await p.textContent("[data-testid=token-prompt]"), /requires a viewer token/);
    await p.fill("[data-testid=token-input]", "wrong-token");
    await p.press("[data-testid=token-input]", "Enter");
    await waitFor("the rejection", async () => /rejected/.test((await p.textContent("[data-testid=token-prompt]").catch(() => "")) ?? ""), SLOW);
    await p.fill("[data-testid=token-input]", "e2e-viewer");
    await p.press("[data-testid=token-input]", "Enter");
    await p.waitForSelector('tr[data-machine="e2e-secure-01"]', { timeout: 60_000 });
    await waitFor("the prompt to go away", async () => (await p.locator("[data-testid=token-prompt]").count()) === 0, SLOW);
    // The token is remembered across reloads.
    await p.reload();
    await p.waitForSelector('tr[data-machine="e2e-secure-01"]', { timeout: 60_000 });
    assert.equal(await p.locator("[data-testid=token-prompt]").count(), 0);
  });
});

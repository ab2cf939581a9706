// PNG screenshots (1280x800) of the three tabs for a machine with a running job.
// Usage: node e2e/screenshots.mjs --url http://127.0.0.1:PORT [--out ../../docs/screenshots] [--machine NAME]
import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { launchChromium, waitFor } from "./browser.mjs";

const args = process.argv.slice(2);
const arg = (n, d) => (args.includes(`--${n}`) ? args[args.indexOf(`--${n}`) + 1] : d);
const url = arg("url", "http://127.0.0.1:50051");
const out = resolve(arg("out", "../../docs/screenshots"));
let machine = arg("machine");
mkdirSync(out, { recursive: true });

const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 });
  page.on("console", (m) => m.type() === "error" && console.error("console:", m.text()));
  await page.goto(url);
  await page.waitForSelector("[data-testid=machines-table] tbody tr[data-machine]", { timeout: 60_000 });
  if (!machine) {
    machine = await waitFor(
      "a machine with a running job",
      // The running job furthest along has the most interesting curve.
      () =>
        page.evaluate(() => {
          const rows = [...document.querySelectorAll("tr[data-machine]:has([data-status=running])")];
          const pct = (r) => Number(r.querySelector("[role=progressbar]")?.getAttribute("aria-valuenow") ?? 0);
          rows.sort((a, b) => pct(b) - pct(a));
          return rows[0]?.getAttribute("data-machine");
        }),
      { timeoutMs: 90_000 },
    );
  }
  await page.screenshot({ path: `${out}/machines.png` });
  await page.click(`tr[data-machine="${machine}"] .row-link`);
  await page.waitForSelector("[role=dialog] [data-testid=kpi-total]");
  await page.waitForSelector("[data-testid=history-table]");
  await page.screenshot({ path: `${out}/summary.png` });

  await page.click("[role=tab]:has-text('Performance')");
  await waitFor("live chart with points", () =>
    page.evaluate(() => Number(document.querySelector("[data-testid=speed-chart]")?.getAttribute("data-point-count") ?? 0) > 3),
    { timeoutMs: 60_000 },
  );
  await page.waitForTimeout(1500);
  // Hover the chart to show the tooltip.
  const box = await page.locator("[data-testid=speed-chart]").boundingBox();
  if (box) await page.mouse.move(box.x + box.width * 0.62, box.y + box.height * 0.5);
  await page.waitForTimeout(400);
  await page.screenshot({ path: `${out}/performance.png` });

  await page.click("[role=tab]:has-text('Analytics')");
  await page.waitForSelector("[data-testid=success-donut]");
  await page.waitForTimeout(800);
  await page.screenshot({ path: `${out}/analytics.png` });
  console.log(`screenshots of ${machine} in ${out}`);
} finally {
  await browser.close();
}

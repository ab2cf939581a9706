// Trend verdicts for the Analytics tab: compare the mean of the newer half of the series with
// the mean of the older half. Pure functions, unit tested.

export type TrendKind = "size" | "duration" | "speed";
export type Verdict = "improving" | "declining" | "steady" | "growing" | "shrinking" | "insufficient";

export interface TrendResult {
  verdict: Verdict;
  /** Relative change of the newer half against the older half (0.12 = +12 %); null without data. */
  change: number | null;
  olderMean: number;
  newerMean: number;
}

/** Fewer points than this give "insufficient". */
export const MIN_TREND_POINTS = 4;
/** Changes smaller than this (relative) are "steady". */
export const STEADY_THRESHOLD = 0.1;

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

/**
 * values: oldest first. With an odd count the middle value belongs to neither half.
 * Duration: shorter is improving. Speed: faster is improving. Size: growing / shrinking.
 */
export function trendVerdict(values: number[], kind: TrendKind, threshold = STEADY_THRESHOLD): TrendResult {
  const clean = values.filter((v) => Number.isFinite(v));
  if (clean.length < MIN_TREND_POINTS) {
    return { verdict: "insufficient", change: null, olderMean: NaN, newerMean: NaN };
  }
  const half = Math.floor(clean.length / 2);
  const olderMean = mean(clean.slice(0, half));
  const newerMean = mean(clean.slice(clean.length - half));
  let change: number;
  if (olderMean === 0) change = newerMean === 0 ? 0 : Infinity;
  else change = (newerMean - olderMean) / olderMean;
  // Classify on the whole percent shown next to the verdict, so "+10%" never reads "Improving"
  // in one card and "Steady" in the next.
  const pct = Number.isFinite(change) ? Math.round(change * 100) : change;
  const limit = Math.round(threshold * 100);
  const up = pct > limit;
  const down = pct < -limit;
  let verdict: Verdict = "steady";
  if (up || down) {
    if (kind === "size") verdict = up ? "growing" : "shrinking";
    else if (kind === "duration") verdict = up ? "declining" : "improving";
    else verdict = up ? "improving" : "declining";
  }
  return { verdict, change: Number.isFinite(change) ? change : null, olderMean, newerMean };
}

export function verdictLabel(v: Verdict): string {
  switch (v) {
    case "insufficient":
      return "Not enough data";
    default:
      return v[0].toUpperCase() + v.slice(1);
  }
}

/** "+12%" / "−8%" / "±0%". */
export function formatChange(change: number | null): string {
  if (change === null) return "";
  const pct = Math.round(change * 100);
  if (pct === 0) return "±0%";
  return pct > 0 ? `+${pct}%` : `−${Math.abs(pct)}%`;
}

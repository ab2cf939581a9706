// The view lives in the query string (?machine=db-01&tab=performance&job=abc) so that a link
// opens the same modal, tab and job.

export type TabId = "summary" | "performance" | "analytics";
export const TABS: TabId[] = ["summary", "performance", "analytics"];

export interface ViewState {
  machine?: string;
  tab: TabId;
  job?: string;
}

export function parseView(search: string): ViewState {
  const q = new URLSearchParams(search);
  const machine = q.get("machine") || undefined;
  const tabParam = q.get("tab");
  const tab = TABS.includes(tabParam as TabId) ? (tabParam as TabId) : "summary";
  const job = q.get("job") || undefined;
  return { machine, tab, job };
}

/** Query string ("" or "?…") for a view; the tab only when a machine is open and not the default. */
export function viewToSearch(v: ViewState): string {
  const q = new URLSearchParams();
  if (v.machine) {
    q.set("machine", v.machine);
    if (v.tab !== "summary") q.set("tab", v.tab);
    if (v.job) q.set("job", v.job);
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

export function sameView(a: ViewState, b: ViewState): boolean {
  return a.machine === b.machine && a.tab === b.tab && a.job === b.job;
}

import { useCallback, useEffect, useRef, useState } from "react";
import { hubStatus } from "./api";
import { MachinesPage } from "./components/MachinesPage";
import { MachineModal } from "./components/MachineModal";
import { HubBanner, TokenPrompt } from "./components/Banner";
import { parseView, sameView, viewToSearch, type TabId, type ViewState } from "./url";
import { useHubStatus } from "./hooks";

function currentView(): ViewState {
  return parseView(window.location.search);
}

export function App() {
  const [view, setView] = useState<ViewState>(currentView);
  const hub = useHubStatus();

  // Back / forward restore the view.
  useEffect(() => {
    const onPop = () => setView(currentView());
    window.addEventListener("popstate", onPop);
    return () => window.removeEventListener("popstate", onPop);
  }, []);

  /** push: a new history entry (opening a machine); replace: tab or job changes. */
  const viewRef = useRef(view);
  viewRef.current = view;
  const navigate = useCallback((next: ViewState, mode: "push" | "replace") => {
    if (sameView(viewRef.current, next)) return;
    const url = `${window.location.pathname}${viewToSearch(next)}${window.location.hash}`;
    if (mode === "push") window.history.pushState(null, "", url);
    else window.history.replaceState(null, "", url);
    viewRef.current = next;
    setView(next);
  }, []);

  useEffect(() => {
    document.title = view.machine ? `${view.machine} · backwatch` : "backwatch";
  }, [view.machine]);

  return (
    <div className="app">
      <header className="topbar">
        <div className="brand">
          <svg width="18" height="18" viewBox="0 0 16 16" aria-hidden="true">
            <rect width="16" height="16" rx="3" fill="currentColor" />
            <path d="M3 11l3-4 3 2 4-5" stroke="white" strokeWidth="1.6" fill="none" />
          </svg>
          backwatch
        </div>
        <span className="topbar-sub">Backup telemetry</span>
        <span className={`conn ${hub.online ? "ok" : "down"}`} data-testid="hub-conn">
          <span className="conn-dot" aria-hidden="true" />
          {hub.online ? "Hub connected" : "Hub unreachable"}
        </span>
      </header>
      <HubBanner onRetry={() => hubStatus.retry()} />
      <TokenPrompt />
      <main>
        <MachinesPage onOpen={(machine) => navigate({ machine, tab: "summary" }, "push")} />
      </main>
      {view.machine ? (
        <MachineModal
          key={view.machine}
          machine={view.machine}
          tab={view.tab}
          job={view.job}
          onTab={(tab: TabId) => navigate({ ...view, tab }, "replace")}
          onJob={(job, tab) => navigate({ ...view, job, tab: tab ?? view.tab }, "replace")}
          onClose={() => navigate({ tab: "summary" }, "push")}
        />
      ) : null}
    </div>
  );
}

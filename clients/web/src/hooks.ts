import { useCallback, useEffect, useRef, useState, useSyncExternalStore } from "react";
import { hubStatus, isAbort, isUnreachable, type HubState } from "./api";

export function useHubStatus(): HubState {
  return useSyncExternalStore(hubStatus.subscribe, hubStatus.get, hubStatus.get);
}

/** 1 s, 2 s, 4 s … capped, with a little jitter so many views do not retry in lockstep. */
export function backoffMs(attempt: number, capMs = 15_000): number {
  const base = Math.min(capMs, 1000 * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.85 + Math.random() * 0.3));
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

export interface QueryState<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  /** Fetch again now. */
  reload: () => void;
}

interface Stored<T> {
  key: string;
  data: T | undefined;
  error: unknown;
  loading: boolean;
}

/**
 * Fetches once per key (JSON of deps), optionally again every intervalMs, keeping the last
 * good data while refreshing. While the hub is unreachable it retries with backoff; when the
 * hub comes back it fetches at once. Other errors are shown and retried on reload().
 */
export function useQuery<T>(
  fetcher: (signal: AbortSignal) => Promise<T>,
  deps: unknown[],
  opts: { intervalMs?: number; enabled?: boolean } = {},
): QueryState<T> {
  const { intervalMs, enabled = true } = opts;
  const key = JSON.stringify(deps);
  const fetcherRef = useRef(fetcher);
  fetcherRef.current = fetcher;
  const [stored, setStored] = useState<Stored<T>>({ key, data: undefined, error: undefined, loading: enabled });
  const [nonce, setNonce] = useState(0);
  const { reconnects } = useHubStatus();

  useEffect(() => {
    if (!enabled) return;
    const ctrl = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    let failures = 0;
    setStored((s) => (s.key === key ? { ...s, loading: true } : { key, data: undefined, error: undefined, loading: true }));
    const run = async () => {
      try {
        const data = await fetcherRef.current(ctrl.signal);
        if (ctrl.signal.aborted) return;
        failures = 0;
        setStored({ key, data, error: undefined, loading: false });
        if (intervalMs) timer = setTimeout(run, intervalMs);
      } catch (e) {
        if (ctrl.signal.aborted || isAbort(e)) return;
        failures++;
        setStored((s) => ({ key, data: s.key === key ? s.data : undefined, error: e, loading: false }));
        if (isUnreachable(e)) timer = setTimeout(run, Math.min(backoffMs(failures), intervalMs ?? Infinity));
        else if (intervalMs) timer = setTimeout(run, Math.max(intervalMs, backoffMs(failures, 30_000)));
      }
    };
    void run();
    return () => {
      ctrl.abort();
      if (timer) clearTimeout(timer);
    };
  }, [key, enabled, intervalMs, nonce, reconnects]);

  const reload = useCallback(() => setNonce((n) => n + 1), []);
  const current = stored.key === key;
  return {
    data: current ? stored.data : undefined,
    error: current ? stored.error : undefined,
    loading: current ? stored.loading : enabled,
    reload,
  };
}

/** Re-render every periodMs (relative times, "updated 4 s ago"). */
export function useNow(periodMs = 1000): Date {
  const [now, setNow] = useState(() => new Date());
  useEffect(() => {
    const t = setInterval(() => setNow(new Date()), periodMs);
    return () => clearInterval(t);
  }, [periodMs]);
  return now;
}

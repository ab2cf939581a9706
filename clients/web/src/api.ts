// grpc-web client for the hub (same origin: the hub serves this GUI and grpc-web on one port),
// plus a tiny store that tracks whether the hub is reachable, fed by every request the
// transport makes.
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { TelemetryService } from "./gen/backwatch/v1/telemetry_pb";

export type Telemetry = Client<typeof TelemetryService>;

type Listener = () => void;

export interface HubState {
  online: boolean;
  /** The hub wants a (different) viewer token: UNAUTHENTICATED or PERMISSION_DENIED. */
  authError?: string;
  /** Increments each time the hub comes back after being unreachable (and on retry()): views refetch. */
  reconnects: number;
  /** When the hub was first seen unreachable in the current outage. */
  since?: Date;
}

let state: HubState = { online: true, reconnects: 0 };
const listeners = new Set<Listener>();

function setState(next: HubState) {
  state = next;
  for (const l of listeners) l();
}

export const hubStatus = {
  get: (): HubState => state,
  subscribe(l: Listener): () => void {
    listeners.add(l);
    return () => listeners.delete(l);
  },
  reachable() {
    if (!state.online) setState({ ...state, online: true, since: undefined, reconnects: state.reconnects + 1 });
  },
  /** Ask every view to fetch again now (the banner's "Retry now"). */
  retry() {
    setState({ ...state, reconnects: state.reconnects + 1 });
  },
  authFailed(message: string) {
    if (state.authError !== message) setState({ ...state, authError: message });
  },
  authOk() {
    if (state.authError !== undefined) setState({ ...state, authError: undefined });
  },
  unreachable() {
    if (state.online) setState({ ...state, online: false, since: new Date() });
  },
};

/** fetch that tells hubStatus whether the hub answered. Aborts are not outages. */
export const trackingFetch: typeof fetch = async (input, init) => {
  try {
    const res = await fetch(input, init);
    // A proxy in front of a stopped hub answers 502-504.
    if (res.status === 502 || res.status === 503 || res.status === 504) hubStatus.unreachable();
    else hubStatus.reachable();
    return res;
  } catch (e) {
    const aborted = (e instanceof DOMException && e.name === "AbortError") || init?.signal?.aborted;
    if (!aborted) hubStatus.unreachable();
    throw e;
  }
};

// A hub started with --viewer-token wants `authorization: Bearer <token>` on every read. The
// token is kept in this browser's localStorage.
const TOKEN_KEY = "backwatch.viewerToken";

export function getToken(): string {
  try {
    return window.localStorage.getItem(TOKEN_KEY) ?? "";
  } catch {
    return "";
  }
}

export function setToken(token: string) {
  try {
    if (token) window.localStorage.setItem(TOKEN_KEY, token);
    else window.localStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: the token lasts until the page reloads
  }
  memoryToken = token;
  hubStatus.authOk();
  hubStatus.retry();
}

let memoryToken: string | undefined;

const authInterceptor: Interceptor = (next) => async (req) => {
  const token = memoryToken ?? getToken();
  if (token) req.header.set("authorization", `Bearer ${token}`);
  try {
    const res = await next(req);
    if (!req.stream) hubStatus.authOk();
    return res;
  } catch (e) {
    const ce = ConnectError.from(e);
    if (ce.code === Code.Unauthenticated || ce.code === Code.PermissionDenied) hubStatus.authFailed(ce.rawMessage);
    throw e;
  }
};

export function createTelemetryClient(baseUrl: string = window.location.origin): Telemetry {
  const transport = createGrpcWebTransport({ baseUrl, fetch: trackingFetch, interceptors: [authInterceptor] });
  return createClient(TelemetryService, transport);
}

let shared: Telemetry | undefined;
export function telemetry(): Telemetry {
  shared ??= createTelemetryClient();
  return shared;
}

/** Network-level failure (hub down, connection reset), as opposed to an answer from the hub. */
export function isUnreachable(err: unknown): boolean {
  const ce = ConnectError.from(err);
  if (ce.code === Code.Unavailable || ce.code === Code.DeadlineExceeded) return true;
  if (ce.code === Code.Unknown && (ce.cause instanceof TypeError || /fetch|network|load failed/i.test(ce.rawMessage))) return true;
  return false;
}

export function isAbort(err: unknown): boolean {
  if (err instanceof DOMException && err.name === "AbortError") return true;
  return err instanceof ConnectError && err.code === Code.Canceled;
}

/** A message for an error panel. */
export function errorMessage(err: unknown): string {
  if (isUnreachable(err)) return "The hub is not reachable.";
  const code = ConnectError.from(err).code;
  if (code === Code.Unauthenticated || code === Code.PermissionDenied) return "The hub needs a viewer token.";
  const ce = ConnectError.from(err);
  return ce.rawMessage || Code[ce.code] || "Unknown error";
}

export function errorCode(err: unknown): Code {
  return ConnectError.from(err).code;
}

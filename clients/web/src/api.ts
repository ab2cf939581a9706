// grpc-web client for the hub (same origin: the hub serves this GUI and grpc-web on one port),
// plus a tiny store that tracks whether the hub is reachable, fed by every request the
// transport makes.
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { TelemetryService } from "./gen/backwatch/v1/telemetry_pb";

export type Telemetry = Client<typeof TelemetryService>;

type Listener = () => void;

export interface HubState {
  online: boolean;
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
    if (!state.online) setState({ online: true, reconnects: state.reconnects + 1 });
  },
  /** Ask every view to fetch again now (the banner's "Retry now"). */
  retry() {
    setState({ ...state, reconnects: state.reconnects + 1 });
  },
  unreachable() {
    if (state.online) setState({ online: false, reconnects: state.reconnects, since: new Date() });
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

export function createTelemetryClient(baseUrl: string = window.location.origin): Telemetry {
  const transport = createGrpcWebTransport({ baseUrl, fetch: trackingFetch });
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
  const ce = ConnectError.from(err);
  return ce.rawMessage || Code[ce.code] || "Unknown error";
}

export function errorCode(err: unknown): Code {
  return ConnectError.from(err).code;
}

import type { ReactNode } from "react";
import { errorMessage, isUnreachable } from "../api";

export function Loading({ label = "Loading…" }: { label?: string }) {
  return (
    <div className="state state-loading" role="status" aria-live="polite">
      <span className="spinner" aria-hidden="true" />
      {label}
    </div>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <div className="state state-empty">{children}</div>;
}

export function ErrorState({ error, onRetry, what }: { error: unknown; onRetry?: () => void; what: string }) {
  const unreachable = isUnreachable(error);
  return (
    <div className="state state-error" role="alert">
      <span>
        Could not load {what}: {errorMessage(error)}
        {unreachable ? " Retrying…" : ""}
      </span>
      {onRetry ? (
        <button type="button" className="link-button" onClick={onRetry}>
          Retry
        </button>
      ) : null}
    </div>
  );
}

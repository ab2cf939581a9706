import { useState } from "react";
import { getToken, setToken } from "../api";
import { useHubStatus, useNow } from "../hooks";
import { formatRelative } from "../format";

/** Shown while the hub does not answer; every view keeps retrying and recovers by itself. */
export function HubBanner({ onRetry }: { onRetry: () => void }) {
  const hub = useHubStatus();
  const now = useNow(5000);
  if (hub.online) return null;
  return (
    <div className="banner" role="alert" data-testid="hub-banner">
      <strong>Cannot reach the backwatch hub.</strong>{" "}
      <span>
        Unreachable since {formatRelative(hub.since, now)}; retrying automatically. Data shown may be out of date.
      </span>
      <button type="button" className="link-button" onClick={onRetry}>
        Retry now
      </button>
    </div>
  );
}

/** Shown when the hub answers UNAUTHENTICATED / PERMISSION_DENIED: asks for a viewer token. */
export function TokenPrompt() {
  const hub = useHubStatus();
  const [value, setValue] = useState("");
  if (!hub.authError || !hub.online) return null;
  const had = !!getToken();
  return (
    <form
      className="banner banner-auth"
      role="alert"
      data-testid="token-prompt"
      onSubmit={(e) => {
        e.preventDefault();
        setToken(value.trim());
        setValue("");
      }}
    >
      <strong>{had ? "The hub rejected the viewer token." : "This hub requires a viewer token."}</strong>
      {had ? <span className="muted">{hub.authError}</span> : <span className="muted">It is kept in this browser.</span>}
      <label className="field">
        <span className="field-label">Viewer token</span>
        <input
          type="password"
          autoComplete="off"
          className="filter"
          value={value}
          onChange={(e) => setValue(e.target.value)}
          data-testid="token-input"
        />
      </label>
      <button type="submit" className="button small" disabled={!value.trim()}>
        Use token
      </button>
      {had ? (
        <button type="button" className="link-button" onClick={() => setToken("")}>
          Forget saved token
        </button>
      ) : null}
    </form>
  );
}

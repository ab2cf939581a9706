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

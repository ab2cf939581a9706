import type { JobStatus } from "../gen/backwatch/v1/telemetry_pb";
import { statusKey, statusLabel } from "../format";

/** Status colour always comes with its text label. */
export function StatusBadge({ status, suffix }: { status: JobStatus | undefined; suffix?: string }) {
  const key = statusKey(status);
  return (
    <span className={`status status-${key}`} data-status={key}>
      <span className="status-dot" aria-hidden="true" />
      {statusLabel(status)}
      {suffix ? <span className="status-suffix"> {suffix}</span> : null}
    </span>
  );
}

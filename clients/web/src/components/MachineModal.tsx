import { telemetry } from "../api";
import { useQuery } from "../hooks";
import { formatMachineInfo, formatRelative, tsToDate } from "../format";
import type { TabId } from "../url";
import { Modal } from "./Modal";
import { Tabs, type TabDef } from "./Tabs";
import { SummaryTab } from "./SummaryTab";
import { PerformanceTab } from "./PerformanceTab";
import { AnalyticsTab } from "./AnalyticsTab";

const TAB_DEFS: TabDef<TabId>[] = [
  { id: "summary", label: "Summary" },
  { id: "performance", label: "Performance" },
  { id: "analytics", label: "Analytics" },
];

export const SUMMARY_POLL_MS = 10_000;

interface Props {
  machine: string;
  tab: TabId;
  job?: string;
  onTab: (tab: TabId) => void;
  onJob: (job: string | undefined, tab?: TabId) => void;
  onClose: () => void;
}

export function MachineModal({ machine, tab, job, onTab, onJob, onClose }: Props) {
  const summary = useQuery(
    (signal) => telemetry().getMachineSummary({ machine }, { signal }),
    ["summary", machine],
    { intervalMs: SUMMARY_POLL_MS },
  );
  const info = formatMachineInfo(summary.data?.machine?.info);
  const lastSeen = tsToDate(summary.data?.machine?.lastSeenAt);
  return (
    <Modal
      titleId="machine-dialog-title"
      title={machine}
      subtitle={
        summary.data ? (
          <span data-testid="machine-info">
            {info || "No machine details reported"}
            {lastSeen ? <span className="muted"> · last seen {formatRelative(lastSeen)}</span> : null}
          </span>
        ) : null
      }
      onClose={onClose}
    >
      <Tabs tabs={TAB_DEFS} selected={tab} onSelect={onTab} label={`${machine} details`} idPrefix="machine">
        {(id) => {
          switch (id) {
            case "summary":
              return <SummaryTab machine={machine} summary={summary} onOpenJob={(j) => onJob(j, "performance")} />;
            case "performance":
              return <PerformanceTab machine={machine} jobId={job} onSelectJob={(j) => onJob(j)} />;
            case "analytics":
              return <AnalyticsTab summary={summary} />;
          }
        }}
      </Tabs>
    </Modal>
  );
}

// WAI-ARIA tabs: role=tablist/tab/tabpanel, roving tabindex, arrow keys / Home / End move and
// activate, Tab moves from the selected tab into its panel.
import { useRef, type KeyboardEvent, type ReactNode } from "react";

export interface TabDef<Id extends string> {
  id: Id;
  label: string;
}

interface TabsProps<Id extends string> {
  tabs: TabDef<Id>[];
  selected: Id;
  onSelect: (id: Id) => void;
  /** Accessible name of the tab list. */
  label: string;
  /** Prefix for element ids (unique per page). */
  idPrefix: string;
  /** Content of the selected panel; other panels stay empty. */
  children: (id: Id) => ReactNode;
  /** Extra content after the tab list (same row). */
  aside?: ReactNode;
}

export function Tabs<Id extends string>({ tabs, selected, onSelect, label, idPrefix, children, aside }: TabsProps<Id>) {
  const refs = useRef<Record<string, HTMLButtonElement | null>>({});

  const onKeyDown = (e: KeyboardEvent<HTMLDivElement>) => {
    const i = tabs.findIndex((t) => t.id === selected);
    let next = -1;
    if (e.key === "ArrowRight") next = (i + 1) % tabs.length;
    else if (e.key === "ArrowLeft") next = (i - 1 + tabs.length) % tabs.length;
    else if (e.key === "Home") next = 0;
    else if (e.key === "End") next = tabs.length - 1;
    if (next < 0) return;
    e.preventDefault();
    const id = tabs[next].id;
    onSelect(id);
    refs.current[id]?.focus();
  };

  return (
    <div className="tabs">
      <div className="tabs-bar">
        <div role="tablist" aria-label={label} className="tablist" onKeyDown={onKeyDown}>
          {tabs.map((t) => {
            const active = t.id === selected;
            return (
              <button
                key={t.id}
                ref={(el) => {
                  refs.current[t.id] = el;
                }}
                type="button"
                role="tab"
                id={`${idPrefix}-tab-${t.id}`}
                aria-selected={active}
                aria-controls={`${idPrefix}-panel-${t.id}`}
                tabIndex={active ? 0 : -1}
                className={active ? "tab active" : "tab"}
                onClick={() => onSelect(t.id)}
              >
                {t.label}
              </button>
            );
          })}
        </div>
        {aside}
      </div>
      {tabs.map((t) => (
        <div
          key={t.id}
          role="tabpanel"
          id={`${idPrefix}-panel-${t.id}`}
          aria-labelledby={`${idPrefix}-tab-${t.id}`}
          hidden={t.id !== selected}
          tabIndex={0}
          className="tabpanel"
        >
          {t.id === selected ? children(t.id) : null}
        </div>
      ))}
    </div>
  );
}

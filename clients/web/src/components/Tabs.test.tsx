import { afterEach, describe, expect, it } from "vitest";
import { cleanup, fireEvent, render, screen } from "@testing-library/react";
import { useState } from "react";
import { Tabs } from "./Tabs";
import { Modal } from "./Modal";

afterEach(cleanup);

type Id = "one" | "two" | "three";
const TABS = [
  { id: "one" as Id, label: "One" },
  { id: "two" as Id, label: "Two" },
  { id: "three" as Id, label: "Three" },
];

function Harness({ initial = "one" as Id }) {
  const [sel, setSel] = useState<Id>(initial);
  return (
    <Tabs tabs={TABS} selected={sel} onSelect={setSel} label="Test tabs" idPrefix="t">
      {(id) => <p>Panel {id}</p>}
    </Tabs>
  );
}

describe("Tabs", () => {
  it("renders an accessible tab list with one selected tab", () => {
    render(<Harness />);
    expect(screen.getByRole("tablist", { name: "Test tabs" })).toBeTruthy();
    const tabs = screen.getAllByRole("tab");
    expect(tabs.map((t) => t.getAttribute("aria-selected"))).toEqual(["true", "false", "false"]);
    expect(tabs.map((t) => t.tabIndex)).toEqual([0, -1, -1]);
    const panel = screen.getByRole("tabpanel");
    expect(panel.textContent).toBe("Panel one");
    expect(panel.getAttribute("aria-labelledby")).toBe(tabs[0].id);
    expect(tabs[0].getAttribute("aria-controls")).toBe(panel.id);
  });

  it("moves with arrow keys, Home and End, wrapping around", () => {
    render(<Harness />);
    const tab = (name: string) => screen.getByRole("tab", { name });
    fireEvent.keyDown(tab("One"), { key: "ArrowRight" });
    expect(tab("Two").getAttribute("aria-selected")).toBe("true");
    expect(document.activeElement).toBe(tab("Two"));
    expect(screen.getByRole("tabpanel").textContent).toBe("Panel two");
    fireEvent.keyDown(tab("Two"), { key: "End" });
    expect(document.activeElement).toBe(tab("Three"));
    fireEvent.keyDown(tab("Three"), { key: "ArrowRight" });
    expect(document.activeElement).toBe(tab("One"));
    fireEvent.keyDown(tab("One"), { key: "ArrowLeft" });
    expect(tab("Three").getAttribute("aria-selected")).toBe("true");
    fireEvent.keyDown(tab("Three"), { key: "Home" });
    expect(tab("One").getAttribute("aria-selected")).toBe("true");
  });

  it("selects on click and keeps the panel reachable by Tab", () => {
    render(<Harness />);
    fireEvent.click(screen.getByRole("tab", { name: "Three" }));
    const panel = screen.getByRole("tabpanel");
    expect(panel.textContent).toBe("Panel three");
    expect(panel.tabIndex).toBe(0);
    // Hidden panels are not exposed.
    expect(screen.queryAllByRole("tabpanel")).toHaveLength(1);
  });
});

describe("Modal", () => {
  it("is a labelled modal dialog that closes on Esc and the close button", () => {
    let closed = 0;
    render(
      <Modal titleId="m-title" title="db-01" onClose={() => closed++}>
        <button type="button">inside</button>
      </Modal>,
    );
    const dialog = screen.getByRole("dialog", { name: "db-01" });
    expect(dialog.getAttribute("aria-modal")).toBe("true");
    fireEvent.keyDown(document, { key: "Escape" });
    expect(closed).toBe(1);
    fireEvent.click(screen.getByRole("button", { name: "Close" }));
    expect(closed).toBe(2);
  });
});

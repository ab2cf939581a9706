import { describe, expect, it } from "vitest";
import { parseView, sameView, viewToSearch } from "./url";

describe("URL state", () => {
  it("round-trips machine, tab and job", () => {
    const v = { machine: "db 01/α", tab: "performance" as const, job: "job:1" };
    const s = viewToSearch(v);
    expect(s).toBe("?machine=db+01%2F%CE%B1&tab=performance&job=job%3A1");
    expect(parseView(s)).toEqual(v);
  });
  it("defaults to the summary tab and drops unknown tabs", () => {
    expect(parseView("?machine=a&tab=bogus")).toEqual({ machine: "a", tab: "summary", job: undefined });
    expect(parseView("")).toEqual({ machine: undefined, tab: "summary", job: undefined });
  });
  it("writes nothing without a machine and omits the default tab", () => {
    expect(viewToSearch({ tab: "analytics" })).toBe("");
    expect(viewToSearch({ machine: "m", tab: "summary" })).toBe("?machine=m");
  });
  it("compares views", () => {
    expect(sameView({ machine: "a", tab: "summary" }, { machine: "a", tab: "summary" })).toBe(true);
    expect(sameView({ machine: "a", tab: "summary" }, { machine: "a", tab: "analytics" })).toBe(false);
  });
});

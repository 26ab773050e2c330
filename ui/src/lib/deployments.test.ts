import { describe, expect, it } from "vitest";
import { applyEvent, cpuCores, memoryBytes, serverTab, type DeploymentSummary } from "./deployments";

const web: DeploymentSummary = {
  id: "a", app_name: "web", image: "i", status: "pending", url: null, replicas: 1,
  created_at: "", updated_at: "",
};

describe("applyEvent", () => {
  it("updates the status of the named deployment only", () => {
    const other = { ...web, id: "b" };
    const next = applyEvent([web, other], {
      type: "deployment_status_changed", deployment_id: "a", data: { status: "running" },
    });
    expect(next.map((d) => d.status)).toEqual(["running", "pending"]);
  });

  it("removes a deleted deployment and ignores unrelated events", () => {
    expect(applyEvent([web], { type: "deployment_deleted", deployment_id: "a", data: {} })).toEqual([]);
    const list = [web];
    expect(applyEvent(list, { type: "task_created", data: {} })).toBe(list);
  });
});

describe("quantities", () => {
  it("reads cpu and memory quantities", () => {
    expect(cpuCores("500m")).toBe(0.5);
    expect(cpuCores("2")).toBe(2);
    expect(memoryBytes("128Mi")).toBe(128 * 2 ** 20);
    expect(memoryBytes("1G")).toBe(1e9);
    expect(memoryBytes("junk")).toBe(0);
  });
});

describe("server tabs", () => {
  it("knows each tab and refuses others", () => {
    expect(serverTab(undefined)).toBe("");
    expect(serverTab("files")).toBe("files");
    expect(serverTab("backups")).toBe("backups");
    expect(serverTab("graphs")).toBeNull();
  });
});

import { describe, expect, it } from "vitest";
import {
  applyBackupEvent,
  backupNameProblem,
  formatSize,
  policyBody,
  policyForm,
  eventNotice,
  type Backup,
  type BackupPolicy,
} from "./backups";

const pending: Backup = {
  id: "b1", ordinal: 0, name: "before-update", locked: false, state: "pending", trigger: "manual",
  size_bytes: null, checksum: null, error: null, created_at: "2026-12-02T08:00:00Z", completed_at: null,
};
const policy: BackupPolicy = {
  schedule: null, keep_last: 7, keep_daily: null, keep_weekly: null,
  ignore: ["/cache"], commands: { before: ["save-off"], after: ["save-on"], settle_seconds: 2 },
};

describe("applyBackupEvent", () => {
  it("completes the named backup with its size and checksum", () => {
    const other = { ...pending, id: "b2" };
    const next = applyBackupEvent([pending, other], {
      type: "backup_completed",
      data: { backup_id: "b1", state: "completed", size_bytes: 2048, checksum: "sha256:ab", error: null },
    });
    expect(next?.[0]).toMatchObject({ state: "completed", size_bytes: 2048, checksum: "sha256:ab" });
    expect(next?.[1]).toBe(other);
  });

  it("keeps the error of a failed one, asks for a reload for unknown ones", () => {
    const failed = applyBackupEvent([pending], {
      type: "backup_failed", data: { backup_id: "b1", state: "failed", error: "restic: no space" },
    });
    expect(failed?.[0]).toMatchObject({ state: "failed", error: "restic: no space" });
    expect(applyBackupEvent([pending], { type: "backup_completed", data: { backup_id: "zz" } })).toBeNull();
    const list = [pending];
    expect(applyBackupEvent(list, { type: "deployment_status_changed", data: {} })).toBe(list);
  });
});

describe("eventNotice", () => {
  it("says what a backup or restore did", () => {
    expect(eventNotice({ type: "backup_completed", data: { name: "n" } })).toBe("Backed up n.");
    expect(eventNotice({ type: "backup_failed", data: { name: "n" } })).toBe("Backing up n failed.");
    expect(eventNotice({ type: "restore_completed", data: { name: "n", wipe: true, restarted: true } }))
      .toBe("Restored n (folder emptied first); the server was started again.");
    expect(eventNotice({ type: "restore_failed", data: { name: "n", restore_error: "disk full" } }))
      .toBe("Restoring n failed: disk full");
    expect(eventNotice({ type: "deployment_status_changed", data: {} })).toBe("");
  });
});

describe("policyBody", () => {
  it("round-trips the form and keeps what the form does not show", () => {
    const form = { ...policyForm(policy), schedule: " 0 4 * * * ", keep_daily: "14" };
    expect(policyBody(form, policy)).toEqual({
      body: { ...policy, schedule: "0 4 * * *", keep_daily: 14 },
      problems: {},
    });
    expect(policyBody({ ...form, schedule: "@daily", keep_last: "" }, policy).body)
      .toMatchObject({ schedule: "@daily", keep_last: null });
  });

  it("names the fields it refuses", () => {
    const form = { schedule: "0 4 * *", keep_last: "0", keep_daily: "1001", keep_weekly: "2.5" };
    const { body, problems } = policyBody(form, policy);
    expect(body).toBeNull();
    expect(Object.keys(problems).sort()).toEqual(["keep_daily", "keep_last", "keep_weekly", "schedule"]);
  });
});

describe("small rules", () => {
  it("checks names as the API does and formats sizes", () => {
    expect(backupNameProblem("")).toBe("");
    expect(backupNameProblem("nightly 2026-12-02")).toBe("");
    expect(backupNameProblem("-bad")).not.toBe("");
    expect(backupNameProblem("a/b")).not.toBe("");
    expect([formatSize(null), formatSize(512), formatSize(1536), formatSize(3 * 2 ** 30)])
      .toEqual(["—", "512 B", "1.5 KiB", "3.0 GiB"]);
  });
});

// Backups of a server (docs/api.md "Backups", docs/stateful.md): the shapes the
// Backups tab reads, its events applied to the list, and the policy form's rules
// (the API's meaning: controlplane/api/backups.py).

export type BackupState = "pending" | "running" | "completed" | "failed";

export interface Backup {
  id: string;
  ordinal: number;
  name: string;
  locked: boolean;
  state: BackupState;
  trigger: string;
  size_bytes: number | null;
  checksum: string | null;
  error: string | null;
  created_at: string;
  completed_at: string | null;
}

export interface BackupPolicy {
  schedule: string | null;
  keep_last: number | null;
  keep_daily: number | null;
  keep_weekly: number | null;
  ignore: string[];
  commands: { before: string[]; after: string[]; settle_seconds: number } | null;
  next_run_at?: string | null;
}

/** The fields of the policy form, as typed (blank: no such rule). */
export interface PolicyForm {
  schedule: string;
  keep_last: string;
  keep_daily: string;
  keep_weekly: string;
}

export const RETENTION_FIELDS = ["keep_last", "keep_daily", "keep_weekly"] as const;

/** A backup name the API takes: blank (it names it) or 1-100 of letters, digits and
 * ` ._:-`, starting with a letter or digit. */
export function backupNameProblem(name: string): string {
  if (!name) return "";
  return /^[A-Za-z0-9][A-Za-z0-9 ._:-]{0,99}$/.test(name)
    ? ""
    : "1-100 letters, digits, spaces or . _ : -, starting with a letter or digit";
}

export function policyForm(policy: BackupPolicy): PolicyForm {
  const text = (value: number | null) => (value === null ? "" : String(value));
  return {
    schedule: policy.schedule ?? "",
    keep_last: text(policy.keep_last),
    keep_daily: text(policy.keep_daily),
    keep_weekly: text(policy.keep_weekly),
  };
}

/** The PUT body for `form`, keeping what the form does not show (`ignore`,
 * `commands`) as `loaded` has it; or the problems by field. The schedule's cron
 * syntax is the API's to judge (its error names the field): only its shape is
 * checked here. */
export function policyBody(
  form: PolicyForm,
  loaded: BackupPolicy,
): { body: BackupPolicy | null; problems: Record<string, string> } {
  const problems: Record<string, string> = {};
  const schedule = form.schedule.trim();
  if (schedule && !schedule.startsWith("@") && schedule.split(/\s+/).length !== 5) {
    problems.schedule = 'five cron fields (minute hour day month weekday) or "@daily"';
  }
  const keep: Record<string, number | null> = {};
  for (const field of RETENTION_FIELDS) {
    const value = form[field].trim();
    if (!value) keep[field] = null;
    else if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 1000) {
      problems[field] = "a whole number from 1 to 1000, or blank";
    } else keep[field] = Number(value);
  }
  if (Object.keys(problems).length) return { body: null, problems };
  const body: BackupPolicy = {
    schedule: schedule || null,
    keep_last: keep.keep_last ?? null,
    keep_daily: keep.keep_daily ?? null,
    keep_weekly: keep.keep_weekly ?? null,
    ignore: loaded.ignore,
    commands: loaded.commands,
  };
  return { body, problems };
}

interface BackupEvent {
  type: string;
  data: Record<string, unknown>;
}

/** Apply a `backup_completed` or `backup_failed` event to the list: the new list,
 * the same list for other events, or null when it names a backup the list lacks
 * (one made elsewhere: read the list again). */
export function applyBackupEvent(list: Backup[], event: BackupEvent): Backup[] | null {
  if (event.type !== "backup_completed" && event.type !== "backup_failed") return list;
  const id = event.data.backup_id;
  if (!list.some((b) => b.id === id)) return null;
  const { state, size_bytes, checksum, error } = event.data;
  return list.map((b) =>
    b.id === id
      ? {
          ...b,
          state: (typeof state === "string" ? state : b.state) as BackupState,
          size_bytes: typeof size_bytes === "number" ? size_bytes : b.size_bytes,
          checksum: typeof checksum === "string" ? checksum : b.checksum,
          error: typeof error === "string" ? error : null,
        }
      : b,
  );
}

/** What a backup or restore event says, or "" for other events. */
export function eventNotice(event: BackupEvent): string {
  const name = typeof event.data.name === "string" ? event.data.name : "the backup";
  if (event.type === "backup_completed") return `Backed up ${name}.`;
  if (event.type === "backup_failed") return `Backing up ${name} failed.`;
  if (event.type === "restore_completed") {
    const wiped = event.data.wipe ? " (folder emptied first)" : "";
    return `Restored ${name}${wiped}${event.data.restarted ? "; the server was started again" : ""}.`;
  }
  if (event.type === "restore_failed") {
    return `Restoring ${name} failed: ${String(event.data.restore_error ?? "unknown error")}`;
  }
  return "";
}

/** A size in bytes for people: B, KiB, MiB, GiB. */
export function formatSize(bytes: number | null): string {
  if (bytes === null) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

// Input rules the pages check before sending, each with the API's meaning (the API
// checks again and its errors show beside the same fields).

/** `KEY=value` lines as an environment object; blank lines and `#` comments are
 * skipped. Problems name the line (a missing `=`, an empty key, a key twice). */
export function parseEnv(text: string): { env: Record<string, string>; problems: string[] } {
  const env: Record<string, string> = {};
  const problems: string[] = [];
  text.split("\n").forEach((raw, index) => {
    const line = raw.replace(/\r$/, "");
    if (!line.trim() || line.trimStart().startsWith("#")) return;
    const cut = line.indexOf("=");
    const key = cut < 0 ? "" : line.slice(0, cut).trim();
    if (cut < 0) problems.push(`line ${index + 1}: expected KEY=value`);
    else if (!key) problems.push(`line ${index + 1}: the name is empty`);
    else if (key.length > 255 || key.includes("\0")) problems.push(`line ${index + 1}: not a usable name`);
    else if (key in env) problems.push(`line ${index + 1}: ${key} is set twice`);
    else env[key] = line.slice(cut + 1);
  });
  return { env, problems };
}

/** The environment as `KEY=value` lines (the editor's text), sorted by name. */
export function formatEnv(env: Record<string, string>): string {
  return Object.keys(env)
    .sort()
    .map((key) => `${key}=${env[key]}`)
    .join("\n");
}

// common/quantities.py: digits with at most one decimal point, then a unit.
const QUANTITY = /^[ \t]*[0-9]+(?:\.[0-9]+)?[ \t]*([A-Za-z]*)[ \t]*$/;
const CPU_UNITS = ["", "m"];
const BYTE_UNITS = ["", "k", "K", "M", "G", "T", "Ki", "Mi", "Gi", "Ti"];

/** The problem with a CPU ("500m", "1.5") or byte ("512Mi") quantity, or "". */
export function quantityProblem(kind: "cpu" | "bytes", value: string): string {
  const match = QUANTITY.exec(value);
  const units = kind === "cpu" ? CPU_UNITS : BYTE_UNITS;
  if (!match || !units.includes(match[1] ?? "")) {
    return kind === "cpu" ? 'cores ("0.5") or millicores ("500m")' : 'bytes with an optional unit ("512Mi", "2G")';
  }
  return "";
}

/** The problem with a new password (8–256 characters, no whitespace), or "". */
export function passwordProblem(password: string, confirmation?: string): string {
  if (password.length < 8) return "at least 8 characters";
  if (password.length > 256) return "at most 256 characters";
  if (/\s/.test(password)) return "no spaces or other whitespace";
  if (confirmation !== undefined && confirmation !== password) return "the two passwords differ";
  return "";
}

/** The problem with a username (3–32 of A-Z a-z 0-9 _ . -), or "". */
export function usernameProblem(name: string): string {
  return /^[A-Za-z0-9_.-]{3,32}$/.test(name) ? "" : "3 to 32 letters, digits, _ . or -";
}

/** The problem with a pasted OpenSSH public key line, or "". */
export function sshKeyProblem(key: string): string {
  const parts = key.trim().split(/\s+/);
  if (parts.length < 2 || !/^(ssh-|ecdsa-|sk-)/.test(parts[0] ?? "")) {
    return 'an OpenSSH public key line ("ssh-ed25519 AAAA… comment")';
  }
  return /^[A-Za-z0-9+/]+={0,3}$/.test(parts[1] ?? "") ? "" : "the key's base64 part is damaged";
}

export interface QuotaLimits {
  deployments: number | null;
  replicas: number | null;
  cpu_millis: number | null;
  memory_bytes: number | null;
  disk_bytes: number | null;
}

export const QUOTA_FIELDS = ["deployments", "replicas", "cpu_millis", "memory_bytes", "disk_bytes"] as const;
export type QuotaField = (typeof QUOTA_FIELDS)[number];

const MIB = 2 ** 20;

/** A limit or usage as people read it: cores for CPU, MiB/GiB for bytes, "unlimited". */
export function formatQuota(field: QuotaField, value: number | null): string {
  if (value === null) return "unlimited";
  if (field === "cpu_millis") return `${+(value / 1000).toFixed(2)} CPU`;
  if (field === "memory_bytes" || field === "disk_bytes") {
    return value >= 2 ** 30 ? `${+(value / 2 ** 30).toFixed(2)} GiB` : `${+(value / MIB).toFixed(1)} MiB`;
  }
  return String(value);
}

/** The form's text for a limit: cores, MiB, or a count; "" = unlimited. */
export function quotaInput(field: QuotaField, value: number | null): string {
  if (value === null) return "";
  if (field === "cpu_millis") return String(value / 1000);
  if (field === "memory_bytes" || field === "disk_bytes") return String(+(value / MIB).toFixed(3));
  return String(value);
}

/** The `PUT /v1/users/{id}/quota` body of the form's texts (cores, MiB, counts; blank =
 * unlimited), or the problems by field. */
export function parseQuota(
  inputs: Record<QuotaField, string>,
): { limits: QuotaLimits; problems: Partial<Record<QuotaField, string>> } {
  const limits: QuotaLimits = { deployments: null, replicas: null, cpu_millis: null, memory_bytes: null, disk_bytes: null };
  const problems: Partial<Record<QuotaField, string>> = {};
  for (const field of QUOTA_FIELDS) {
    const text = inputs[field].trim();
    if (!text) continue;
    const counted = field === "deployments" || field === "replicas";
    if (!(counted ? /^[0-9]+$/ : /^[0-9]+(\.[0-9]+)?$/).test(text)) {
      problems[field] = counted ? "a whole number, or blank for unlimited" : "a number, or blank for unlimited";
      continue;
    }
    const scale = field === "cpu_millis" ? 1000 : counted ? 1 : MIB;
    limits[field] = Math.round(Number(text) * scale);
  }
  return { limits, problems };
}

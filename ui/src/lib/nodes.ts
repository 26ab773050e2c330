// The admin's nodes page (docs/api.md, "Node endpoints"): the node form's rules, the
// agent config an operator pastes on a new host, and host graphs fed by polling.

import { formatSize } from "./backups";
import { Ring, WINDOW_SECONDS } from "./stats";

export interface NodeInfo {
  id: string;
  name: string;
  /** pending (not enrolled yet), ready, down or draining */
  status: string;
  draining: boolean;
  labels: Record<string, string>;
  grpc_address: string;
  http_address: string;
  sftp_address: string;
  port_range_start: number;
  port_range_end: number;
  cpu_millis: number;
  memory_bytes: number;
  disk_bytes: number;
  fingerprint: Record<string, unknown>;
  host_stats: Record<string, unknown>;
  created_at: string;
  enrolled_at: string | null;
  last_seen: string | null;
}

export interface CreatedNode extends NodeInfo {
  /** shown this once */
  join_token: string;
}

/** What DELETE /v1/nodes/{id} answers. */
export interface NodeDeleted {
  message: string;
  node_id: string;
  containers_removed: boolean;
  removed_containers: number;
  data_deleted: boolean;
}

/** Host stats are refreshed by polling GET /v1/nodes at most this often (seconds):
 * node events on the notifications socket carry no stats. */
export const POLL_SECONDS = 10;

// controlplane/api/nodes.py CreateNode.
const NODE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
export const DEFAULT_PORT_RANGE = { start: 30000, end: 30999 };

export interface NewNode {
  name: string;
  port_range_start: number;
  port_range_end: number;
}

/** The form's values as the API's body, or the problem with each field (the API's
 * rules: a name of letters, digits, `_`, `.`, `-` not starting with a symbol, at most
 * 100 characters; ports 1–65535, the end not below the start). */
export function newNodeBody(
  name: string,
  start: string,
  end: string,
): { body: NewNode } | { errors: Record<string, string> } {
  const errors: Record<string, string> = {};
  const trimmed = name.trim();
  if (!trimmed) errors.name = "A name is required.";
  else if (trimmed.length > 100) errors.name = "At most 100 characters.";
  else if (!NODE_NAME.test(trimmed)) {
    errors.name = "Letters, digits, '_', '.' and '-', starting with a letter or digit.";
  }
  const port = (text: string, field: string) => {
    const value = Number(text.trim());
    if (!/^\d+$/.test(text.trim()) || value < 1 || value > 65535) {
      errors[field] = "A port from 1 to 65535.";
    }
    return value;
  };
  const first = port(start, "port_range_start");
  const last = port(end, "port_range_end");
  if (!errors.port_range_start && !errors.port_range_end && last < first) {
    errors.port_range_end = "Not below the first port.";
  }
  if (Object.keys(errors).length) return { errors };
  return { body: { name: trimmed, port_range_start: first, port_range_end: last } };
}

/** A quoted HCL string: quotes and backslashes escaped, `${` and `%{` kept literal. */
export function hclString(value: string): string {
  const escaped = value
    .replace(/\\/g, "\\\\")
    .replace(/"/g, '\\"')
    .replace(/\n/g, "\\n")
    .replace(/\$\{/g, () => "$${")
    .replace(/%\{/g, "%%{");
  return `"${escaped}"`;
}

/** The `agent { }` block to paste into the new host's config.hcl: the control plane
 * URL, the one-time join token and the node's port range (the agent sends its own
 * range at enrolment, so it must match the one chosen here). */
export function agentConfigSnippet(controlplaneUrl: string, node: CreatedNode): string {
  return [
    "agent {",
    `  controlplane_url = ${hclString(controlplaneUrl)}`,
    `  join_token       = ${hclString(node.join_token)}`,
    "  # The address other machines reach this host by:",
    '  advertise_host   = ""',
    "  port_range {",
    `    start = ${node.port_range_start}`,
    `    end   = ${node.port_range_end}`,
    "  }",
    "}",
    "",
  ].join("\n");
}

/** Host use as numbers (the API passes the agent's message on, 64-bit counters as
 * strings and zero fields left out). */
export interface HostStats {
  cpu_percent: number;
  memory_used_bytes: number;
  memory_total_bytes: number;
  disk_used_bytes: number;
  disk_total_bytes: number;
  load1: number;
  load5: number;
  load15: number;
  uptime_ms: number;
}

const HOST_FIELDS: (keyof HostStats)[] = [
  "cpu_percent", "memory_used_bytes", "memory_total_bytes", "disk_used_bytes",
  "disk_total_bytes", "load1", "load5", "load15", "uptime_ms",
];

/** `host_stats` as numbers, or null when the node has reported none yet. */
export function parseHostStats(raw: Record<string, unknown> | null | undefined): HostStats | null {
  if (!raw || !HOST_FIELDS.some((field) => field in raw)) return null;
  const stats = {} as HostStats;
  for (const field of HOST_FIELDS) {
    const value = Number(raw[field] ?? 0);
    stats[field] = Number.isFinite(value) ? value : 0;
  }
  return stats;
}

export interface HostPoint {
  time: number;
  cpu: number;
  memory: number;
  load: number;
}

/** One node's host stats over the graphs' window, one point per poll. */
export class HostStatsRing {
  private ring = new Ring<HostPoint>(Math.ceil(WINDOW_SECONDS / POLL_SECONDS) + 1);

  /** Add the stats seen at `time` (seconds). Node events re-read the list between
   * polls: a sample less than half a poll after the last is skipped, so the ring
   * keeps spanning the graphs' window. */
  push(stats: HostStats, time: number): void {
    const newest = this.ring.toArray().at(-1);
    if (newest && time < newest.time + POLL_SECONDS / 2) return;
    this.ring.push({ time, cpu: stats.cpu_percent, memory: stats.memory_used_bytes, load: stats.load1 });
  }

  get size(): number {
    return this.ring.size;
  }

  series(key: "cpu" | "memory" | "load"): [number[], number[]] {
    return this.ring.columns((p) => p.time, key);
  }
}

const FINGERPRINT_LABELS: [string, string][] = [
  ["hostname", "Hostname"],
  ["cpu_model", "CPU"],
  ["cpu_count", "Cores"],
  ["memory_bytes", "Memory"],
  ["disk_bytes", "Disk"],
  ["allocatable_disk_bytes", "Disk for volumes"],
  ["os", "OS"],
  ["kernel", "Kernel"],
  ["docker_version", "Docker"],
  ["agent_version", "Agent"],
  ["cgroup_version", "cgroup"],
];

/** Human units of a byte count (binary prefixes). */
export const formatBytes = (bytes: number): string => formatSize(bytes);

/** The fingerprint as labelled rows, known fields first in a fixed order, then any
 * others by name; byte counts in human units. Empty before enrolment. */
export function fingerprintRows(fingerprint: Record<string, unknown>): [string, string][] {
  const known = new Set(FINGERPRINT_LABELS.map(([key]) => key));
  const rows: [string, string][] = [];
  const shown = (key: string, value: unknown) =>
    key.endsWith("_bytes") && typeof value === "number" ? formatBytes(value) : String(value);
  for (const [key, label] of FINGERPRINT_LABELS) {
    const value = fingerprint[key];
    if (value !== undefined && value !== null && value !== "") rows.push([label, shown(key, value)]);
  }
  for (const key of Object.keys(fingerprint).sort()) {
    if (!known.has(key)) rows.push([key, shown(key, fingerprint[key])]);
  }
  return rows;
}

// A deployment's replicas as GET /v1/deployments/{id}/status shows them.

export interface ReplicaStatus {
  id: string;
  ordinal: number;
  volume_id: string;
  node_id: string | null;
  sftp_address: string | null;
  ports: { container_port: number; host_port: number }[];
  state: string;
  health: string;
  ready: boolean;
  restart_count: number;
  error: string | null;
  install_state: string | null;
}

export interface DeploymentStatus {
  status: string;
  health: string;
  replicas: { desired: number; ready: number; available: number };
  instances: ReplicaStatus[];
}

/** The SFTP login of a replica's slot: `<username>.<first 8 characters of its volume
 * id>` (docs/protocols/sftp.md), the same wherever the slot runs. */
export function sftpLogin(username: string, volumeId: string): string {
  return `${username}.${volumeId.slice(0, 8)}`;
}

/** The `sftp` command that opens a slot's files: the node's advertised SFTP address
 * (`host:port`, `[v6]:port`) and the login; null when the node has no address. */
export function sftpCommand(login: string, address: string | null): string | null {
  const match = /^(\[[^\]]+\]|[^:]+):([0-9]+)$/.exec(address ?? "");
  if (!match) return null;
  const host = (match[1] ?? "").replace(/^\[(.*)\]$/, "$1");
  return `sftp -P ${match[2]} ${login}@${host.includes(":") ? `[${host}]` : host}`;
}

/** Ports as `host → container` text ("25565 → 25565/tcp" style, without protocol). */
export function portsText(ports: ReplicaStatus["ports"]): string {
  return ports.length ? ports.map((p) => `${p.host_port} → ${p.container_port}`).join(", ") : "none";
}

/** The problem with a replica count typed in the scale form (0–100 whole), or "". */
export function replicasProblem(text: string, max = 100): string {
  if (!/^[0-9]+$/.test(text.trim())) return "a whole number";
  return Number(text) > max ? `at most ${max}` : "";
}

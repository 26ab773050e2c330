// Deployment shapes of the API (controlplane/api/deployment_schemas.py) used by pages.

export interface DeploymentSummary {
  id: string;
  app_name: string;
  image: string;
  status: string;
  url: string | null;
  replicas: number;
  created_at: string;
  updated_at: string;
}

export interface DeploymentDetails extends DeploymentSummary {
  resources: Record<string, string>;
  env_vars: Record<string, string>;
  ports: number[];
  error_message: string | null;
  template: Record<string, unknown> | null;
}

/** Apply one notification to a list: the new list (unchanged when not about it). */
export function applyEvent(
  list: DeploymentSummary[],
  event: { type: string; deployment_id?: string; data: Record<string, unknown> },
): DeploymentSummary[] {
  const id = event.deployment_id;
  if (!id) return list;
  if (event.type === "deployment_deleted") return list.filter((d) => d.id !== id);
  const status = event.data.status;
  if (event.type === "deployment_status_changed" && typeof status === "string") {
    return list.map((d) => (d.id === id ? { ...d, status } : d));
  }
  return list;
}

/** CPU cores of a Kubernetes-style quantity ("500m", "2"); memory bytes of "128Mi". */
export function cpuCores(quantity: string | undefined): number {
  if (!quantity) return 1;
  return quantity.endsWith("m") ? Number(quantity.slice(0, -1)) / 1000 : Number(quantity);
}

const MEMORY_UNITS: Record<string, number> = {
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, K: 1e3, M: 1e6, G: 1e9, T: 1e12,
};

export function memoryBytes(quantity: string | undefined): number {
  const match = /^(\d+(?:\.\d+)?)([KMGT]i?)?$/.exec(quantity ?? "");
  if (!match) return 0;
  return Number(match[1]) * (match[2] ? (MEMORY_UNITS[match[2]] ?? 1) : 1);
}

/** The tabs of a server's page, each at `/servers/<id>/<tab>` (the console at
 * `/servers/<id>`). */
export const SERVER_TABS = [
  { tab: "", label: "Console" },
  { tab: "shell", label: "Shell" },
  { tab: "files", label: "Files" },
  { tab: "backups", label: "Backups" },
  { tab: "replicas", label: "Replicas" },
  { tab: "logs", label: "Logs" },
  { tab: "domains", label: "Domains" },
  { tab: "settings", label: "Settings" },
] as const;

export type ServerTab = (typeof SERVER_TABS)[number]["tab"];

/** The tab a path parameter names ("" for the console), or null for an unknown one. */
export function serverTab(param: string | undefined): ServerTab | null {
  const found = SERVER_TABS.find((t) => t.tab === (param ?? ""));
  return found ? found.tab : null;
}

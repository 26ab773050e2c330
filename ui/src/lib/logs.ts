// A deployment's log stream (GET /v1/deployments/{id}/logs/stream, docs/api.md
// "WebSockets"): first-message authentication, then one JSON entry per frame.

export interface LogEntry {
  timestamp: string;
  level: string;
  message: string;
  source: string;
  replica_id: string;
}

export type LogFrame =
  | { kind: "entry"; entry: LogEntry }
  | { kind: "authenticated" }
  | { kind: "error"; code: string; message: string }
  | null;

export function logsStreamUrl(deploymentId: string, tail: number, loc: Location = location): string {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}/v1/deployments/${encodeURIComponent(deploymentId)}/logs/stream?tail=${tail}`;
}

/** What one text frame of the stream says (null for anything unreadable). */
export function parseLogFrame(data: unknown): LogFrame {
  if (typeof data !== "string") return null;
  let frame: Record<string, unknown>;
  try {
    frame = JSON.parse(data) as Record<string, unknown>;
  } catch {
    return null;
  }
  if (frame.type === "authenticated") return { kind: "authenticated" };
  if (frame.type === "error") {
    const error = (frame.error ?? {}) as { code?: unknown; message?: unknown };
    return { kind: "error", code: String(error.code ?? "error"), message: String(error.message ?? "") };
  }
  if (typeof frame.message === "string" && typeof frame.timestamp === "string") {
    return {
      kind: "entry",
      entry: {
        timestamp: frame.timestamp,
        level: String(frame.level ?? ""),
        message: frame.message,
        source: String(frame.source ?? ""),
        replica_id: String(frame.replica_id ?? ""),
      },
    };
  }
  return null;
}

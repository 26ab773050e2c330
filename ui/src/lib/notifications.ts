// The notifications WebSocket (docs/protocols/events.md): deployment events pushed by
// the control plane, so the server list never polls. Reconnects with a fresh access
// token when the socket closes (an expired token closes it with 4401).

import { refreshSession, session } from "./api";

export interface NotificationEvent {
  type: string;
  deployment_id?: string;
  task_id?: string;
  node_id?: string;
  timestamp: string;
  data: Record<string, unknown>;
}

export function notificationsUrl(loc: Location = location): string {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}/v1/ws/notifications`;
}

/** Listen to events until the returned function is called; `topics` are asked for
 * beside the default `deployments` and `tasks` (e.g. `nodes` for administrators). */
export function subscribe(
  onEvent: (event: NotificationEvent) => void,
  topics: string[] = [],
): () => void {
  let socket: WebSocket | null = null;
  let stopped = false;
  let delay = 500;

  const open = () => {
    if (stopped || !session.accessToken) return;
    socket = new WebSocket(notificationsUrl());
    socket.onopen = () => {
      socket?.send(JSON.stringify({ type: "authenticate", token: session.accessToken }));
    };
    socket.onmessage = (message) => {
      const event = JSON.parse(String(message.data)) as NotificationEvent;
      if (event.type === "authenticated") {
        delay = 500;
        if (topics.length) socket?.send(JSON.stringify({ type: "subscribe", topics }));
      }
      else if (event.timestamp) onEvent(event);
    };
    socket.onclose = async (close) => {
      if (stopped) return;
      if (close.code === 4401 && !(await refreshSession())) return;
      setTimeout(open, delay);
      delay = Math.min(delay * 2, 10_000);
    };
  };
  open();
  return () => {
    stopped = true;
    socket?.close(1000);
  };
}

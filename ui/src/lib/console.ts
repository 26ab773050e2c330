// The agent's console WebSocket protocol (docs/protocols/console.md), without any DOM:
// the page gives it a way to open a socket and to get a fresh token, and listens.

import { parseStats, type StatsSample } from "./stats";

export interface ConsoleAccess {
  url: string;
  token: string;
}

/** The part of the browser's WebSocket this client uses (a test passes a fake). */
export interface SocketLike {
  readyState: number;
  onopen: ((event: Event) => void) | null;
  onmessage: ((event: MessageEvent) => void) | null;
  onclose: ((event: CloseEvent) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface ConsoleHandlers {
  line?: (text: string, kind: "console" | "install") => void;
  status?: (state: string) => void;
  stats?: (sample: StatsSample) => void;
  error?: (message: string) => void;
  connected?: (connected: boolean) => void;
}

export type PowerAction = "start" | "stop" | "restart" | "kill";
const OPEN = 1;

export class ConsoleClient {
  private socket: SocketLike | null = null;
  private closed = false;
  authenticated = false;

  constructor(
    private readonly access: () => Promise<ConsoleAccess>,
    private readonly open: (url: string) => SocketLike,
    private readonly on: ConsoleHandlers,
  ) {}

  /** Fetch access, open the socket and authenticate (replacing an earlier socket). */
  async connect(): Promise<void> {
    const { url, token } = await this.access();
    if (this.closed) return;
    this.socket?.close(1000);
    const socket = this.open(url);
    this.socket = socket;
    socket.onopen = () => this.send("auth", [token]);
    socket.onmessage = (event) => this.receive(event.data);
    socket.onclose = (event) => {
      if (this.socket !== socket) return; // a socket this client already replaced
      this.authenticated = false;
      this.on.connected?.(false);
      if (!this.closed && event.code !== 1000) this.on.error?.(`console closed (${event.code})`);
    };
  }

  sendCommand(line: string): void {
    this.send("send command", [line]);
  }

  setState(action: PowerAction): void {
    this.send("set state", [action]);
  }

  close(): void {
    this.closed = true;
    this.socket?.close(1000);
    this.socket = null;
  }

  private send(event: string, args: unknown[]): void {
    if (this.socket && this.socket.readyState === OPEN) {
      this.socket.send(JSON.stringify({ event, args }));
    }
  }

  /** Re-authenticate on the same socket: no reconnect, so no gap in the output. */
  private async reauthenticate(): Promise<void> {
    try {
      const { token } = await this.access();
      this.send("auth", [token]);
    } catch (error) {
      this.on.error?.(`could not renew the console token: ${String(error)}`);
    }
  }

  private receive(data: unknown): void {
    if (typeof data !== "string") return;
    let frame: { event?: unknown; args?: unknown };
    try {
      frame = JSON.parse(data) as typeof frame;
    } catch {
      return;
    }
    const args = Array.isArray(frame.args) ? frame.args : [];
    const first = args[0];
    switch (frame.event) {
      case "auth success":
        this.authenticated = true;
        this.on.connected?.(true);
        break;
      case "status":
        if (typeof first === "string") this.on.status?.(first);
        break;
      case "console output":
      case "install output":
        if (typeof first === "string") {
          this.on.line?.(first, frame.event === "console output" ? "console" : "install");
        }
        break;
      case "stats": {
        const sample = parseStats(first);
        if (sample) this.on.stats?.(sample);
        break;
      }
      case "token expiring":
      case "token expired":
        void this.reauthenticate();
        break;
      case "jwt error":
      case "daemon error":
        this.on.error?.(typeof first === "string" ? first : String(frame.event));
        break;
    }
  }
}

/** Previously sent commands, walked with the arrow keys like a shell's history. */
export class CommandHistory {
  private entries: string[] = [];
  private cursor = 0;

  constructor(private readonly limit = 100) {}

  add(line: string): void {
    if (line && this.entries[this.entries.length - 1] !== line) {
      this.entries.push(line);
      if (this.entries.length > this.limit) this.entries.shift();
    }
    this.cursor = this.entries.length;
  }

  /** The older entry (arrow up), staying on the oldest. */
  previous(): string {
    this.cursor = Math.max(0, this.cursor - 1);
    return this.entries[this.cursor] ?? "";
  }

  /** The newer entry (arrow down); past the newest, an empty line. */
  next(): string {
    this.cursor = Math.min(this.entries.length, this.cursor + 1);
    return this.entries[this.cursor] ?? "";
  }
}

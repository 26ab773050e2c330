// The agent's exec WebSocket (docs/protocols/exec.md), without any DOM: a command in
// a replica's container with a TTY. The page gives it a way to get the URL and the
// single-use token, and a way to open a socket; output arrives as bytes.

import type { SocketLike } from "./console";

export interface ExecAccess {
  url: string;
  token: string;
  session_id: string;
}

export interface TtySize {
  height: number;
  width: number;
}

export interface ExecHandlers {
  output?: (bytes: Uint8Array) => void;
  exited?: (exitCode: number | null) => void;
  error?: (message: string) => void;
  closed?: () => void;
}

const OPEN = 1;
const TTY_LIMIT = 1000;

/** The TTY size the agent accepts (1..1000 each) for a terminal of `rows` × `cols`. */
export function ttySize(rows: number, cols: number): TtySize {
  const clamp = (n: number) => Math.min(TTY_LIMIT, Math.max(1, Math.floor(n) || 1));
  return { height: clamp(rows), width: clamp(cols) };
}

/** Base64 of the UTF-8 bytes of `text` (what a `stdin` frame carries). */
export function encodeInput(text: string): string {
  let binary = "";
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** The bytes of a base64 `stdout` frame. */
export function decodeOutput(data: string): Uint8Array {
  const binary = atob(data);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

export class ExecClient {
  private socket: SocketLike | null = null;
  private ended = false;

  constructor(
    private readonly access: () => Promise<ExecAccess>,
    private readonly open: (url: string) => SocketLike,
    private readonly on: ExecHandlers,
  ) {}

  /** Get a token, open the socket and start the command with the terminal's size.
   * A token works once: every connect asks for a new session. */
  async connect(size: TtySize): Promise<void> {
    const { url, token } = await this.access();
    this.ended = false;
    const socket = this.open(url);
    this.socket = socket;
    socket.onopen = () => {
      socket.send(JSON.stringify({ auth_token: token, tty_size: size, term: "xterm-256color" }));
    };
    socket.onmessage = (event) => this.receive(event.data);
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.on.closed?.();
    };
  }

  /** Keys typed at the terminal. */
  input(text: string): void {
    this.send({ stdin: { data: encodeInput(text) } });
  }

  /** The terminal was resized: the command gets SIGWINCH. */
  resize(size: TtySize): void {
    this.send({ tty_size: size });
  }

  get connected(): boolean {
    return this.socket !== null && !this.ended;
  }

  close(): void {
    const socket = this.socket;
    this.socket = null;
    socket?.close(1000);
  }

  private send(frame: unknown): void {
    if (this.socket && this.socket.readyState === OPEN && !this.ended) {
      this.socket.send(JSON.stringify(frame));
    }
  }

  private receive(data: unknown): void {
    if (typeof data !== "string") return;
    let frame: {
      stdout?: { data?: unknown };
      exited?: unknown;
      result?: { exit_code?: unknown };
      error?: { message?: unknown; code?: unknown };
    };
    try {
      frame = JSON.parse(data) as typeof frame;
    } catch {
      return;
    }
    if (typeof frame.stdout?.data === "string") {
      this.on.output?.(decodeOutput(frame.stdout.data));
    } else if (frame.exited === true) {
      this.ended = true;
      const code = frame.result?.exit_code;
      this.on.exited?.(typeof code === "number" ? code : null);
    } else if (frame.error) {
      const { message, code } = frame.error;
      this.on.error?.(typeof message === "string" ? message : String(code ?? "exec error"));
    }
  }
}

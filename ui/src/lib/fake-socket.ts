// A stand-in for the browser's WebSocket in the protocol clients' tests (console,
// exec): records what the client sends, and plays the server's side.

import type { SocketLike } from "./console";

export class FakeSocket implements SocketLike {
  readyState = 0;
  sent: unknown[] = [];
  onopen: ((event: Event) => void) | null = null;
  onmessage: ((event: MessageEvent) => void) | null = null;
  onclose: ((event: CloseEvent) => void) | null = null;
  closedWith: number | undefined;

  constructor(readonly url: string) {}
  send(data: string): void {
    this.sent.push(JSON.parse(data));
  }
  close(code?: number): void {
    this.closedWith = code;
    this.readyState = 3;
  }
  opened(): void {
    this.readyState = 1;
    this.onopen?.({} as Event);
  }
  /** The server sends `frame` as JSON text. */
  receive(frame: unknown): void {
    this.onmessage?.({ data: JSON.stringify(frame) } as MessageEvent);
  }
}

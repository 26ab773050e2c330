import { describe, expect, it, vi } from "vitest";
import { CommandHistory, ConsoleClient } from "./console";
import { FakeSocket } from "./fake-socket";

class ConsoleSocket extends FakeSocket {
  frame(event: string, ...args: unknown[]): void {
    this.receive({ event, args });
  }
}

async function connected() {
  const sockets: ConsoleSocket[] = [];
  let tokens = 0;
  const access = vi.fn(async () => ({ url: "ws://agent/ws", token: `t${++tokens}` }));
  const on = { line: vi.fn(), status: vi.fn(), stats: vi.fn(), error: vi.fn(), connected: vi.fn() };
  const client = new ConsoleClient(access, (url) => {
    const socket = new ConsoleSocket(url);
    sockets.push(socket);
    return socket;
  }, on);
  await client.connect();
  const socket = sockets[0] as ConsoleSocket;
  socket.opened();
  return { client, socket, on, access };
}

describe("ConsoleClient", () => {
  it("authenticates on open and reports output, status and stats", async () => {
    const { client, socket, on } = await connected();
    expect(socket.url).toBe("ws://agent/ws");
    expect(socket.sent).toEqual([{ event: "auth", args: ["t1"] }]);
    socket.frame("auth success");
    socket.frame("status", "running");
    socket.frame("console output", "hello");
    socket.frame("install output", "step 1");
    socket.frame("stats", JSON.stringify({ cpu_absolute: 5, network: { rx_bytes: 0, tx_bytes: 0 } }));
    expect(client.authenticated).toBe(true);
    expect(on.connected).toHaveBeenCalledWith(true);
    expect(on.status).toHaveBeenCalledWith("running");
    expect(on.line.mock.calls).toEqual([["hello", "console"], ["step 1", "install"]]);
    expect(on.stats.mock.calls[0]?.[0].cpu_absolute).toBe(5);
  });

  it("sends commands and power actions as protocol frames", async () => {
    const { client, socket } = await connected();
    client.sendCommand("say hi");
    client.setState("restart");
    expect(socket.sent.slice(1)).toEqual([
      { event: "send command", args: ["say hi"] },
      { event: "set state", args: ["restart"] },
    ]);
  });

  it("re-authenticates on the same socket when the token is expiring", async () => {
    const { socket, access } = await connected();
    socket.frame("token expiring");
    await vi.waitFor(() => expect(socket.sent).toContainEqual({ event: "auth", args: ["t2"] }));
    expect(access).toHaveBeenCalledTimes(2);
  });

  it("reports agent errors and ignores malformed frames", async () => {
    const { socket, on } = await connected();
    socket.onmessage?.({ data: "{oops" } as MessageEvent);
    socket.frame("daemon error", "server is not running");
    expect(on.error).toHaveBeenCalledWith("server is not running");
    expect(on.error).toHaveBeenCalledTimes(1);
  });

  it("closes with 1000 and reports no error for its own close", async () => {
    const { client, socket, on } = await connected();
    client.close();
    expect(socket.closedWith).toBe(1000);
    socket.onclose?.({ code: 1000 } as CloseEvent);
    expect(on.error).not.toHaveBeenCalled();
  });
});

describe("ConsoleClient reconnecting", () => {
  it("replaces its socket and ignores the old one's close", async () => {
    const sockets: ConsoleSocket[] = [];
    const on = { connected: vi.fn(), error: vi.fn() };
    const client = new ConsoleClient(async () => ({ url: "ws://a", token: "t" }), (url) => {
      const socket = new ConsoleSocket(url);
      sockets.push(socket);
      return socket;
    }, on);
    await client.connect();
    await client.connect();
    const [first, second] = sockets as [ConsoleSocket, ConsoleSocket];
    expect(first.closedWith).toBe(1000);
    first.onclose?.({ code: 1006 } as CloseEvent);
    expect(on.connected).not.toHaveBeenCalled();
    second.onclose?.({ code: 1006 } as CloseEvent);
    expect(on.connected).toHaveBeenCalledWith(false);
    expect(on.error).toHaveBeenCalledWith("console closed (1006)");
  });
});

describe("CommandHistory", () => {
  it("walks older and newer entries like a shell", () => {
    const history = new CommandHistory();
    history.add("one");
    history.add("two");
    history.add("two");
    expect(history.previous()).toBe("two");
    expect(history.previous()).toBe("one");
    expect(history.previous()).toBe("one");
    expect(history.next()).toBe("two");
    expect(history.next()).toBe("");
  });
});

import { describe, expect, it, vi } from "vitest";
import { decodeOutput, encodeInput, ExecClient, ttySize } from "./exec";
import { FakeSocket } from "./fake-socket";


async function started() {
  const sockets: FakeSocket[] = [];
  const access = vi.fn(async () => ({ url: "ws://agent/exec", token: "jwt", session_id: "s" }));
  const on = { output: vi.fn(), exited: vi.fn(), error: vi.fn(), closed: vi.fn() };
  const client = new ExecClient(access, (url) => {
    const socket = new FakeSocket(url);
    sockets.push(socket);
    return socket;
  }, on);
  await client.connect({ height: 30, width: 100 });
  const socket = sockets[0] as FakeSocket;
  socket.opened();
  return { client, socket, on, access };
}

describe("ExecClient", () => {
  it("sends the token with the TTY size first, then typed bytes and resizes", async () => {
    const { client, socket } = await started();
    expect(socket.url).toBe("ws://agent/exec");
    client.input("ls é\r");
    client.resize({ height: 40, width: 120 });
    expect(socket.sent).toEqual([
      { auth_token: "jwt", tty_size: { height: 30, width: 100 }, term: "xterm-256color" },
      { stdin: { data: encodeInput("ls é\r") } },
      { tty_size: { height: 40, width: 120 } },
    ]);
    expect(new TextDecoder().decode(decodeOutput(encodeInput("ls é\r")))).toBe("ls é\r");
  });

  it("hands output over as bytes and reports the exit code, then drops input", async () => {
    const { client, socket, on } = await started();
    socket.receive({ stdout: { data: btoa("hi\r\n") } });
    expect(new TextDecoder().decode(on.output.mock.calls[0]?.[0])).toBe("hi\r\n");
    socket.receive({ exited: true, result: { exit_code: 3 } });
    expect(on.exited).toHaveBeenCalledWith(3);
    expect(client.connected).toBe(false);
    client.input("more");
    expect(socket.sent).toHaveLength(1);
    socket.receive({ exited: true, result: { exit_code: null } });
    expect(on.exited).toHaveBeenLastCalledWith(null);
  });

  it("reports the agent's errors and the socket's end; ignores junk", async () => {
    const { client, socket, on } = await started();
    socket.onmessage?.({ data: "not json" } as MessageEvent);
    socket.receive({ error: { code: "token_used", message: "token already used" } });
    expect(on.error).toHaveBeenCalledWith("token already used");
    socket.onclose?.({ code: 1008 } as CloseEvent);
    expect(on.closed).toHaveBeenCalledOnce();
    expect(client.connected).toBe(false);
  });

  it("keeps TTY sizes inside what the agent accepts", () => {
    expect(ttySize(24.7, 80)).toEqual({ height: 24, width: 80 });
    expect(ttySize(0, 5000)).toEqual({ height: 1, width: 1000 });
    expect(ttySize(Number.NaN, -3)).toEqual({ height: 1, width: 1 });
  });
});

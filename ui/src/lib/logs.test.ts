import { describe, expect, it } from "vitest";
import { logsStreamUrl, parseLogFrame } from "./logs";

describe("log stream", () => {
  it("builds the socket address on the page's origin", () => {
    const loc = { protocol: "https:", host: "panel.test" } as Location;
    expect(logsStreamUrl("a b", 200, loc)).toBe("wss://panel.test/v1/deployments/a%20b/logs/stream?tail=200");
  });

  it("reads entries, the greeting and errors; ignores junk", () => {
    const entry = { timestamp: "2026-01-01T00:00:00Z", level: "info", message: "hi", source: "stdout", replica_id: "r" };
    expect(parseLogFrame(JSON.stringify(entry))).toEqual({ kind: "entry", entry });
    expect(parseLogFrame('{"type":"authenticated","user_id":"u"}')).toEqual({ kind: "authenticated" });
    expect(parseLogFrame('{"type":"error","error":{"code":"deployment_not_found","message":"no such deployment"}}')).toEqual({
      kind: "error", code: "deployment_not_found", message: "no such deployment",
    });
    expect(parseLogFrame("nope")).toBeNull();
    expect(parseLogFrame('{"message": 3}')).toBeNull();
    expect(parseLogFrame(new ArrayBuffer(2))).toBeNull();
  });
});

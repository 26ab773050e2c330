import { describe, expect, it } from "vitest";
import {
  HostStatsRing, POLL_SECONDS, agentConfigSnippet, fingerprintRows, hclString, newNodeBody,
  parseHostStats, type CreatedNode,
} from "./nodes";
import { Ring, WINDOW_SECONDS } from "./stats";

const created = {
  id: "n1", name: "node-b", status: "pending", port_range_start: 31000, port_range_end: 31099,
  join_token: "encjoin_abc-DEF_123",
} as CreatedNode;

describe("agentConfigSnippet", () => {
  it("is the agent block with the URL, the token and the node's port range", () => {
    expect(agentConfigSnippet("https://panel.example.com", created)).toBe(
      [
        "agent {",
        '  controlplane_url = "https://panel.example.com"',
        '  join_token       = "encjoin_abc-DEF_123"',
        "  # The address other machines reach this host by:",
        '  advertise_host   = ""',
        "  port_range {",
        "    start = 31000",
        "    end   = 31099",
        "  }",
        "}",
        "",
      ].join("\n"),
    );
  });

  it("quotes values so that HCL reads them back literally", () => {
    expect(hclString('a"b\\c')).toBe('"a\\"b\\\\c"');
    expect(hclString("${x} %{y}")).toBe('"$${x} %%{y}"');
    expect(hclString("two\nlines")).toBe('"two\\nlines"');
  });
});

describe("newNodeBody", () => {
  it("gives the API's body for good values", () => {
    expect(newNodeBody(" node-b ", "30000", "30999")).toEqual({
      body: { name: "node-b", port_range_start: 30000, port_range_end: 30999 },
    });
  });

  it("names each bad field with the API's rule", () => {
    const result = newNodeBody("-bad name", "0", "x");
    expect("errors" in result && Object.keys(result.errors).sort()).toEqual([
      "name", "port_range_end", "port_range_start",
    ]);
    expect(newNodeBody("", "1", "2")).toEqual({ errors: { name: "A name is required." } });
    expect(newNodeBody("a".repeat(101), "1", "2")).toHaveProperty("errors.name");
    expect(newNodeBody("ok", "65536", "2")).toHaveProperty("errors.port_range_start");
  });

  it("refuses a range that ends below its start", () => {
    expect(newNodeBody("ok", "2000", "1999")).toEqual({
      errors: { port_range_end: "Not below the first port." },
    });
    expect(newNodeBody("ok", "2000", "2000")).toHaveProperty("body");
  });
});

describe("parseHostStats", () => {
  it("reads 64-bit counters sent as strings and missing zero fields", () => {
    const stats = parseHostStats({ cpu_percent: 12.5, memory_used_bytes: "1073741824", load1: 0.5 });
    expect(stats).toMatchObject({ cpu_percent: 12.5, memory_used_bytes: 2 ** 30, load1: 0.5, disk_used_bytes: 0 });
  });

  it("is null before the node reports any", () => {
    expect(parseHostStats({})).toBeNull();
    expect(parseHostStats(null)).toBeNull();
  });
});

describe("HostStatsRing", () => {
  const stats = (cpu: number) => parseHostStats({ cpu_percent: cpu, memory_used_bytes: String(cpu * 10), load1: cpu / 100 })!;

  it("keeps the graphs' window of polls, oldest first", () => {
    const ring = new HostStatsRing();
    const capacity = WINDOW_SECONDS / POLL_SECONDS + 1;
    for (let i = 1; i <= capacity + 5; i++) ring.push(stats(i), i * POLL_SECONDS);
    expect(ring.size).toBe(capacity);
    const [times, cpu] = ring.series("cpu");
    expect(times[0]).toBe(6 * POLL_SECONDS);
    expect(cpu.at(-1)).toBe(capacity + 5);
    expect(ring.series("memory")[1].at(-1)).toBe((capacity + 5) * 10);
    expect(ring.series("load")[1][0]).toBe(0.06);
  });

  it("skips a sample less than half a poll after the last (an event's re-read)", () => {
    const ring = new HostStatsRing();
    ring.push(stats(1), 100);
    ring.push(stats(2), 100 + POLL_SECONDS / 2 - 0.1);
    ring.push(stats(3), 99);
    ring.push(stats(4), 100 + POLL_SECONDS / 2);
    expect(ring.series("cpu")).toEqual([[100, 100 + POLL_SECONDS / 2], [1, 4]]);
  });
});

describe("Ring", () => {
  it("wraps around keeping the newest items", () => {
    const ring = new Ring<{ t: number }>(2);
    [1, 2, 3].forEach((t) => ring.push({ t }));
    expect(ring.toArray()).toEqual([{ t: 2 }, { t: 3 }]);
    expect(ring.columns((item) => item.t, "t")).toEqual([[2, 3], [2, 3]]);
    expect(() => new Ring(0)).toThrow(RangeError);
  });
});

describe("fingerprintRows", () => {
  it("labels known fields in order, bytes in units, then the rest by name", () => {
    const rows = fingerprintRows({ zeta: 1, memory_bytes: 2 ** 31, hostname: "h", cpu_count: 4, os: "" });
    expect(rows).toEqual([
      ["Hostname", "h"],
      ["Cores", "4"],
      ["Memory", "2.0 GiB"],
      ["zeta", "1"],
    ]);
    expect(fingerprintRows({})).toEqual([]);
  });
});

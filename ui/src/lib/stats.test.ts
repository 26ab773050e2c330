import { describe, expect, it } from "vitest";
import { StatsRing, parseStats, type StatsSample } from "./stats";

function sample(cpu: number, rx: number, tx = 0): StatsSample {
  return {
    memory_bytes: cpu * 10,
    memory_limit_bytes: 1000,
    cpu_absolute: cpu,
    network: { rx_bytes: rx, tx_bytes: tx },
    disk_bytes: 0,
    uptime_ms: 0,
    state: "running",
  };
}

describe("StatsRing", () => {
  it("keeps the newest `capacity` points, oldest first", () => {
    const ring = new StatsRing(3);
    for (let i = 1; i <= 5; i++) ring.push(sample(i, 0), i);
    expect(ring.size).toBe(3);
    expect(ring.toArray().map((p) => p.cpu)).toEqual([3, 4, 5]);
    expect(ring.series("time" as never)[0]).toEqual([3, 4, 5]);
  });

  it("turns network counters into rates per second", () => {
    const ring = new StatsRing(10);
    ring.push(sample(0, 100, 50), 10);
    const point = ring.push(sample(0, 300, 150), 12);
    expect(point.rx).toBe(100);
    expect(point.tx).toBe(50);
  });

  it("reads a counter reset (a restart) as zero, not a negative rate", () => {
    const ring = new StatsRing(10);
    ring.push(sample(0, 1000), 1);
    expect(ring.push(sample(0, 10), 2).rx).toBe(0);
  });

  it("refuses a zero capacity", () => {
    expect(() => new StatsRing(0)).toThrow(RangeError);
  });
});

describe("parseStats", () => {
  it("reads the JSON string the agent sends and rejects anything else", () => {
    expect(parseStats(JSON.stringify(sample(7, 1)))?.cpu_absolute).toBe(7);
    expect(parseStats("{not json")).toBeNull();
    expect(parseStats({ cpu_absolute: 1 })).toBeNull();
    expect(parseStats(JSON.stringify({ cpu_absolute: 1 }))).toBeNull();
  });
});

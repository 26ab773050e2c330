// A fixed window of `stats` samples (docs/protocols/console.md): the graphs show the
// last 10 minutes, one sample a second, so the buffer never grows past its capacity.

export interface StatsSample {
  memory_bytes: number;
  memory_limit_bytes: number;
  cpu_absolute: number;
  network: { rx_bytes: number; tx_bytes: number };
  disk_bytes: number;
  uptime_ms: number;
  state: string;
}

/** One point of every series: time in seconds, network as bytes/s since the last. */
export interface StatsPoint {
  time: number;
  cpu: number;
  memory: number;
  rx: number;
  tx: number;
}

export const WINDOW_SECONDS = 600;

/** The newest `capacity` items pushed, oldest first: memory never grows past it. */
export class Ring<T> {
  private items: (T | undefined)[];
  private next = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    if (capacity < 1) throw new RangeError("capacity must be at least 1");
    this.items = new Array<T | undefined>(capacity);
  }

  push(item: T): void {
    this.items[this.next] = item;
    this.next = (this.next + 1) % this.capacity;
    this.count = Math.min(this.count + 1, this.capacity);
  }

  get size(): number {
    return this.count;
  }

  /** The kept items, oldest first. */
  toArray(): T[] {
    const start = (this.next - this.count + this.capacity) % this.capacity;
    const out: T[] = [];
    for (let i = 0; i < this.count; i++) out.push(this.items[(start + i) % this.capacity] as T);
    return out;
  }

  /** Columns as uPlot wants them: [times, values of `key`]. */
  columns<K extends keyof T>(time: (item: T) => number, key: K): [number[], number[]] {
    const items = this.toArray();
    return [items.map(time), items.map((item) => Number(item[key]))];
  }
}

export class StatsRing {
  private ring: Ring<StatsPoint>;
  private last: { time: number; rx: number; tx: number } | null = null;

  constructor(readonly capacity: number = WINDOW_SECONDS) {
    this.ring = new Ring<StatsPoint>(capacity);
  }

  /** Add a sample taken at `time` (seconds); network counters become rates. */
  push(sample: StatsSample, time: number): StatsPoint {
    const { rx_bytes: rx, tx_bytes: tx } = sample.network;
    const previous = this.last;
    const elapsed = previous ? time - previous.time : 0;
    const rate = (now: number, before: number) =>
      elapsed > 0 && now >= before ? (now - before) / elapsed : 0;
    const point: StatsPoint = {
      time,
      cpu: sample.cpu_absolute,
      memory: sample.memory_bytes,
      rx: previous ? rate(rx, previous.rx) : 0,
      tx: previous ? rate(tx, previous.tx) : 0,
    };
    this.last = { time, rx, tx };
    this.ring.push(point);
    return point;
  }

  get size(): number {
    return this.ring.size;
  }

  /** The kept points, oldest first. */
  toArray(): StatsPoint[] {
    return this.ring.toArray();
  }

  /** Columns as uPlot wants them: [times, values of `key`]. */
  series(key: "cpu" | "memory" | "rx" | "tx"): [number[], number[]] {
    return this.ring.columns((p) => p.time, key);
  }
}

/** Parse a `stats` frame's argument (a JSON string, as Wings sends it). */
export function parseStats(arg: unknown): StatsSample | null {
  if (typeof arg !== "string") return null;
  try {
    const value = JSON.parse(arg) as StatsSample;
    return typeof value.cpu_absolute === "number" && value.network ? value : null;
  } catch {
    return null;
  }
}

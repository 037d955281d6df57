import { build, decodeFromCompressedBase64, encodeIntoCompressedBase64, type Histogram } from 'hdr-histogram-js';

/**
 * Latency histograms (HdrHistogram, 3 significant digits, recorded in microseconds) that travel
 * between threads as compressed base64 and merge exactly, so percentiles over all workers are real
 * percentiles, not averages of per-worker ones.
 */
export class Latency {
  #histogram: Histogram;

  constructor(histogram?: Histogram) {
    this.#histogram = histogram ?? build({ numberOfSignificantValueDigits: 3 });
  }

  static decode(encoded: string): Latency {
    return new Latency(decodeFromCompressedBase64(encoded));
  }

  get count(): number {
    return this.#histogram.totalCount;
  }

  /** Milliseconds; clamped at 1 µs, because clocks of one machine may still disagree by that much. */
  record(ms: number): void {
    this.#histogram.recordValue(Math.max(1, Math.round(ms * 1000)));
  }

  add(other: Latency): void {
    this.#histogram.add(other.#histogram);
  }

  encode(): string {
    return encodeIntoCompressedBase64(this.#histogram);
  }

  reset(): void {
    this.#histogram.reset();
  }

  percentile(p: number): number {
    return this.#histogram.getValueAtPercentile(p) / 1000;
  }

  summary(): LatencySummary | null {
    if (this.count === 0) return null;
    const round = (us: number) => Math.round(us) / 1000;
    return {
      count: this.count,
      mean: round(this.#histogram.mean),
      p50: round(this.#histogram.getValueAtPercentile(50)),
      p90: round(this.#histogram.getValueAtPercentile(90)),
      p95: round(this.#histogram.getValueAtPercentile(95)),
      p99: round(this.#histogram.getValueAtPercentile(99)),
      p999: round(this.#histogram.getValueAtPercentile(99.9)),
      max: round(this.#histogram.maxValue),
    };
  }
}

/** Milliseconds. */
export interface LatencySummary {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p95: number;
  p99: number;
  p999: number;
  max: number;
}

export const HISTOGRAMS = [
  /** connect() to synced, first connection of each device. */
  'connect',
  /** send() to the ok-ack (committed in PostgreSQL), SDK retries included. */
  'ack',
  /** send() at the sender to the `message` event at a recipient device, live deliveries. */
  'e2e',
  /** The same for messages a device got while it was resyncing after a reconnect. */
  'resync',
  /** A churned device's connect() to synced again. */
  'reconnect',
  /** A disconnect the load generator did not cause (a node killed or draining) to connected again, by the SDK alone. */
  'rejoin',
  /** The same to synced again (reconnected and resynced). */
  'recovery',
] as const;
export type HistogramName = (typeof HISTOGRAMS)[number];

export const COUNTERS = [
  'tokens',
  'connects',
  'connectFailures',
  'conversationsCreated',
  'sent',
  'acked',
  'sendFailed',
  /** `message:send` emits beyond the first (ack timeouts, disconnects, rate_limited). */
  'sendRetries',
  /** New messages at a device other than the sender's own. */
  'deliveries',
  'resyncDeliveries',
  'lateDeliveries',
  /** Late deliveries that came while the device was resyncing (the rest crossed between nodes live). */
  'lateResyncDeliveries',
  'duplicates',
  /** `message` events that are not load messages (system messages) or of unknown conversations. */
  'untracked',
  'typingBursts',
  'typingSeen',
  'readMarks',
  'receiptsSeen',
  'statusDelivered',
  'statusRead',
  'presenceSets',
  'presenceSeen',
  'churnDisconnects',
  'reconnects',
  'unplannedDisconnects',
  /** Unplanned disconnects after which the SDK reconnected and resynced by itself. */
  'recoveries',
] as const;
export type CounterName = (typeof COUNTERS)[number];
export type Counters = Record<CounterName, number>;

export function zeroCounters(): Counters {
  return Object.fromEntries(COUNTERS.map((name) => [name, 0])) as Counters;
}

/** Errors are keyed `operation/code`, e.g. `send/validation`, `ack/rate_limited`, `connect/unavailable`. */
export type ErrorCounts = Record<string, number>;

export interface CpuSample {
  /** Thread CPU time over the interval, µs. */
  userUs: number;
  systemUs: number;
  /** Event-loop utilization over the interval, 0..1. */
  elu: number;
  wallMs: number;
}

/** What a worker reports every second: deltas since its previous report. */
export interface Snapshot {
  worker: number;
  counters: Partial<Counters>;
  errors: ErrorCounts;
  histograms: Partial<Record<HistogramName, string>>;
  /** `lagMs`: how late the worker fired its most overdue scheduled action in the interval (it is the bottleneck when this grows). */
  gauges: { connected: number; devices: number; pendingSends: number; lagMs: number };
  cpu: CpuSample;
}

/** One thread's CPU and event-loop meter: each `sample()` covers the time since the previous one. */
export class CpuMeter {
  #cpu = threadCpu();
  #elu = performance.eventLoopUtilization();
  #at = performance.now();

  sample(): CpuSample {
    const cpu = threadCpu();
    const elu = performance.eventLoopUtilization();
    const now = performance.now();
    const sample = {
      userUs: cpu.user - this.#cpu.user,
      systemUs: cpu.system - this.#cpu.system,
      elu: performance.eventLoopUtilization(elu, this.#elu).utilization,
      wallMs: now - this.#at,
    };
    this.#cpu = cpu;
    this.#elu = elu;
    this.#at = now;
    return sample;
  }
}

/** CPU of the calling thread where Node has it (v23.9+), else of the process. */
function threadCpu(): NodeJS.CpuUsage {
  return typeof process.threadCpuUsage === 'function' ? process.threadCpuUsage() : process.cpuUsage();
}

/** Per-worker recorder: counters, errors and interval histograms, taken (and reset) once a second. */
export class Recorder {
  counters = zeroCounters();
  errors: ErrorCounts = {};
  readonly histograms = Object.fromEntries(HISTOGRAMS.map((name) => [name, new Latency()])) as Record<HistogramName, Latency>;

  count(name: CounterName, by = 1): void {
    this.counters[name] += by;
  }

  error(operation: string, code: string): void {
    const key = `${operation}/${code}`;
    this.errors[key] = (this.errors[key] ?? 0) + 1;
  }

  record(name: HistogramName, ms: number): void {
    this.histograms[name].record(ms);
  }

  take(): Pick<Snapshot, 'counters' | 'errors' | 'histograms'> {
    const counters: Partial<Counters> = {};
    for (const name of COUNTERS) if (this.counters[name] !== 0) counters[name] = this.counters[name];
    const histograms: Partial<Record<HistogramName, string>> = {};
    for (const name of HISTOGRAMS) {
      const histogram = this.histograms[name];
      if (histogram.count === 0) continue;
      histograms[name] = histogram.encode();
      histogram.reset();
    }
    const errors = this.errors;
    this.counters = zeroCounters();
    this.errors = {};
    return { counters, errors, histograms };
  }
}

export function addCounters(into: Counters, delta: Partial<Counters>): void {
  for (const [name, value] of Object.entries(delta) as Array<[CounterName, number]>) into[name] += value;
}

export function addErrors(into: ErrorCounts, delta: ErrorCounts): void {
  for (const [key, value] of Object.entries(delta)) into[key] = (into[key] ?? 0) + value;
}

export function sumErrors(errors: ErrorCounts, filter: (operation: string, code: string) => boolean = () => true): number {
  let total = 0;
  for (const [key, value] of Object.entries(errors)) {
    const [operation = '', code = ''] = key.split('/');
    if (filter(operation, code)) total += value;
  }
  return total;
}

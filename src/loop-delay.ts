import { createHistogram, performance, type EventLoopUtilization } from 'node:perf_hooks';
import { Gauge, type Registry } from 'prom-client';
import { every, type Periodic } from './timeouts.js';

export const loopDelayDefaults = {
  /** How often the delay is sampled while the loop is busy, ms (prom-client's default precision). */
  resolutionMs: 10,
  /**
   * How often it is sampled while the loop is only partly busy (under `saturatedUtilization`), ms: each
   * tick of a sleeping loop is a wake-up that costs more than the sample (~0.15 ms of CPU on a VM).
   * A stall delays the next tick whatever the period; the recorded delay keeps the 10 ms base.
   */
  partlyBusyResolutionMs: 50,
  /** Utilization (0–1) from which the loop is sampled every `resolutionMs`. */
  saturatedUtilization: 0.5,
  /** How often the loop's utilization is checked, ms. */
  checkEveryMs: 1_000,
  /**
   * Utilization (0–1) from which the loop counts as busy and its delay is sampled by a timer of its own.
   * At 5% an idle node's own bursts (a consistency round, a GC, a scrape) kept a 50 ms sampler running
   * for seconds at a time: 20 wake-ups a second, more than all its other work. Under this the once-a-second
   * check's own lateness is the sample: no wake-up of its own.
   */
  busyUtilization: 0.25,
  /** Checks in a row under that before sampling stops. */
  idleChecks: 3,
} as const;

/** The gauges prom-client's default metrics define for the event-loop delay (replaced by this module's). */
export const LOOP_DELAY_METRICS = [
  'nodejs_eventloop_lag_seconds',
  'nodejs_eventloop_lag_min_seconds',
  'nodejs_eventloop_lag_max_seconds',
  'nodejs_eventloop_lag_mean_seconds',
  'nodejs_eventloop_lag_stddev_seconds',
  'nodejs_eventloop_lag_p50_seconds',
  'nodejs_eventloop_lag_p90_seconds',
  'nodejs_eventloop_lag_p99_seconds',
] as const;

/**
 * The event-loop delay metrics of prom-client's defaults (same names, same meaning: the time between two
 * ticks of a 10 ms timer, so about 0.010 s on a free loop, more when callbacks hold the loop), sampled
 * often only while the loop is busy. prom-client samples every 10 ms forever: 100 wake-ups a second, about
 * 0.5% of a core on an idle node, more than everything else it does. Here a check once a second reads the
 * loop's utilization (free: libuv keeps the counters) and records its own lateness as a sample; a sampler
 * of its own starts when the utilization reaches 25% (every 50 ms, every 10 ms from 50%) and stops after
 * 3 s under 25%. While nothing was sampled since the last scrape, the gauges read 0.
 * `nodejs_eventloop_lag_seconds` (one setImmediate at scrape) is unchanged.
 */
export class LoopDelayMonitor {
  private readonly histogram = createHistogram();
  private sampler: NodeJS.Timeout | undefined;
  private lastTick = 0;
  private readonly checker: Periodic;
  private utilization: EventLoopUtilization = performance.eventLoopUtilization();
  private quietChecks = 0;

  constructor(registry: Registry) {
    for (const name of LOOP_DELAY_METRICS) registry.removeSingleMetric(name);
    const gauge = (name: string, help: string) => new Gauge({ name, help, registers: [registry] });
    const lag = new Gauge({
      name: 'nodejs_eventloop_lag_seconds',
      help: 'Lag of event loop in seconds.',
      registers: [registry],
      collect: () => {
        const start = process.hrtime.bigint();
        setImmediate(() => lag.set(Number(process.hrtime.bigint() - start) / 1e9));
        const h = this.histogram;
        // Nothing sampled (an idle loop): zeros, without reading the empty histogram, whose mean, stddev
        // and percentiles each walk every bucket (stddev alone ~0.3 ms of a scrape in a node's profile).
        const empty = h.count === 0;
        const seconds = (read: () => number) => (empty ? 0 : read() / 1e9);
        min.set(seconds(() => h.min));
        max.set(seconds(() => h.max));
        mean.set(seconds(() => h.mean));
        stddev.set(seconds(() => h.stddev));
        p50.set(seconds(() => h.percentile(50)));
        p90.set(seconds(() => h.percentile(90)));
        p99.set(seconds(() => h.percentile(99)));
        if (!empty) h.reset();
      },
    });
    const min = gauge('nodejs_eventloop_lag_min_seconds', 'The minimum recorded event loop delay.');
    const max = gauge('nodejs_eventloop_lag_max_seconds', 'The maximum recorded event loop delay.');
    const mean = gauge('nodejs_eventloop_lag_mean_seconds', 'The mean of the recorded event loop delays.');
    const stddev = gauge(
      'nodejs_eventloop_lag_stddev_seconds',
      'The standard deviation of the recorded event loop delays.',
    );
    const p50 = gauge(
      'nodejs_eventloop_lag_p50_seconds',
      'The 50th percentile of the recorded event loop delays.',
    );
    const p90 = gauge(
      'nodejs_eventloop_lag_p90_seconds',
      'The 90th percentile of the recorded event loop delays.',
    );
    const p99 = gauge(
      'nodejs_eventloop_lag_p99_seconds',
      'The 99th percentile of the recorded event loop delays.',
    );
    // On the shared wake-ups of the node's periodic jobs (every): the check costs no wake-up of its own.
    this.checker = every(
      loopDelayDefaults.checkEveryMs,
      (lateMs) => {
        // The check's lateness is a sample of the delay for free, recorded as a 10 ms timer's tick would be.
        if (this.sampler === undefined) this.record(Math.max(0, lateMs));
        this.check();
      },
      { unref: true },
    );
  }

  /** One sample: the time between two ticks of a 10 ms timer whose tick came `lateMs` late. */
  private record(lateMs: number): void {
    this.histogram.record(Math.max(1, Math.round((loopDelayDefaults.resolutionMs + lateMs) * 1e6)));
  }

  /** True while the delay is being sampled. */
  get sampling(): boolean {
    return this.sampler !== undefined;
  }

  /** Stops sampling and checking (the gauges stay registered). */
  stop(): void {
    this.checker.stop();
    this.stopSampling();
  }

  /** Starts or stops sampling from the loop's utilization since the last check (`observed`: for tests). */
  check(observed?: number): void {
    const delta = performance.eventLoopUtilization(this.utilization);
    this.utilization = performance.eventLoopUtilization();
    const utilization = observed ?? delta.utilization;
    if (utilization >= loopDelayDefaults.busyUtilization) {
      this.quietChecks = 0;
      this.startSampling(
        utilization >= loopDelayDefaults.saturatedUtilization
          ? loopDelayDefaults.resolutionMs
          : loopDelayDefaults.partlyBusyResolutionMs,
      );
    } else if (this.sampler !== undefined && (this.quietChecks += 1) >= loopDelayDefaults.idleChecks) {
      this.stopSampling();
    }
  }

  /** The sampler's period now, ms (undefined while not sampling). */
  get periodMs(): number | undefined {
    return this.sampler === undefined ? undefined : this.period;
  }

  private period: number = loopDelayDefaults.resolutionMs;

  private startSampling(periodMs: number): void {
    if (this.sampler !== undefined && this.period === periodMs) return;
    clearInterval(this.sampler);
    this.period = periodMs;
    this.lastTick = performance.now();
    this.sampler = setInterval(() => {
      const now = performance.now();
      this.record(now - this.lastTick - periodMs);
      this.lastTick = now;
    }, periodMs).unref();
  }

  private stopSampling(): void {
    clearInterval(this.sampler);
    this.sampler = undefined;
    this.quietChecks = 0;
  }
}

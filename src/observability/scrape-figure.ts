import type { Logger } from '../logger.js';
import { withTimeout } from '../timeouts.js';

export const scrapeFigureDefaults = {
  // The local Prometheus scrapes with a 2 s timeout: every figure read at scrape time answers well within it.
  timeoutMs: 750,
  // Two scrapes this close (two scrapers, a test) share one read.
  reuseForMs: 1_000, // 1 s
} as const;

export interface ScrapeFigureOptions {
  /** What it reads, for log lines (`outbox_oldest_age_seconds`). */
  name: string;
  read: () => Promise<number>;
  logger: Logger;
  /** Longest a scrape waits for the read, ms; past it the figure is NaN (unknown). Default 750. */
  timeoutMs?: number;
  /** A read younger than this is answered again without reading, ms. Default 1000. */
  reuseForMs?: number;
}

/**
 * A figure read only when Prometheus scrapes (a query, a Kafka request), so an idle node does no work
 * between scrapes: one read in flight at a time, bounded so a dead server cannot fail the whole scrape,
 * NaN while it cannot be read (logged once per outage).
 */
export class ScrapeFigure {
  private inFlight: Promise<number> | undefined;
  private last: { value: number; at: number } | undefined;
  private failing = false;
  private readonly timeoutMs: number;
  private readonly reuseForMs: number;

  constructor(private readonly options: ScrapeFigureOptions) {
    this.timeoutMs = options.timeoutMs ?? scrapeFigureDefaults.timeoutMs;
    this.reuseForMs = options.reuseForMs ?? scrapeFigureDefaults.reuseForMs;
  }

  async value(): Promise<number> {
    if (this.last !== undefined && performance.now() - this.last.at < this.reuseForMs) return this.last.value;
    this.inFlight ??= this.options.read().finally(() => {
      this.inFlight = undefined;
    });
    try {
      const value = await withTimeout(this.inFlight, this.timeoutMs, this.options.name);
      this.last = { value, at: performance.now() };
      if (this.failing) this.options.logger.info({ figure: this.options.name }, 'metric readable again');
      this.failing = false;
      return value;
    } catch (err) {
      if (!this.failing) {
        this.options.logger.warn(
          { figure: this.options.name, err: err instanceof Error ? err.message : String(err) },
          'cannot read a metric at scrape time; reported as NaN until it can',
        );
      }
      this.failing = true;
      this.last = undefined;
      return Number.NaN;
    }
  }
}

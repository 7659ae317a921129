import type { Counter, Histogram } from 'prom-client';
import { InvariantError } from './domain/errors.js';

/**
 * Children of prom-client counters and histograms for the hot paths (every answer, every purchase).
 * prom-client checks and hashes the labels on every `inc`/`observe`, also through a `labels()` child (its
 * children only bind the labels); these children keep plain numbers instead and hand them to prom-client
 * when the registry is read (the metric's `collect` hook), so counting costs an addition and observing a
 * bucket search. What a scrape shows is the same as with prom-client's own calls
 * (test/metrics/hot-metrics.test.ts compares the two).
 */
export interface HotCounter {
  inc(value?: number): void;
}

export interface HotHistogram {
  /** Records `times` observations of `value` (a batch's purchases share their stage's latency). */
  observe(value: number, times?: number): void;
}

type Labels<L extends string> = Partial<Record<L, string | number>>;

/** prom-client's own state of a histogram (lib/histogram.js): one entry per label set, counts per bound. */
interface HistogramEntry {
  labels: object;
  bucketValues: Record<number, number>;
  sum: number;
  count: number;
}
interface HistogramState {
  hashMap: Record<string, HistogramEntry>;
  upperBounds: readonly number[];
}

const sameLabels = (a: object, b: object): boolean => {
  const as = a as Record<string, unknown>;
  const bs = b as Record<string, unknown>;
  const keys = Object.keys(as);
  return keys.length === Object.keys(bs).length && keys.every((k) => String(as[k]) === String(bs[k]));
};

/** Runs `flush` before the metric's own `collect` (if any) each time the registry is read. */
function beforeCollect(metric: object, flush: () => void): void {
  const hooked = metric as { collect?: () => unknown };
  const own = hooked.collect;
  hooked.collect = function (this: unknown) {
    flush();
    return own?.call(this);
  };
}

/** A maker of hot children of `counter`; each child's series is listed (at 0) from its making. */
export function hotCounter<L extends string>(counter: Counter<L>): (labels: Labels<L>) => HotCounter {
  const children: { labels: Labels<L>; pending: number }[] = [];
  beforeCollect(counter, () => {
    for (const child of children)
      if (child.pending !== 0) {
        counter.inc(child.labels, child.pending);
        child.pending = 0;
      }
  });
  return (labels) => {
    counter.inc(labels, 0);
    const child = {
      labels,
      pending: 0,
      inc(value = 1) {
        child.pending += value;
      },
    };
    children.push(child);
    return child;
  };
}

/** A maker of hot children of `histogram`; each child's series is listed (at 0) from its making. */
export function hotHistogram<L extends string>(histogram: Histogram<L>): (labels: Labels<L>) => HotHistogram {
  const state = histogram as unknown as HistogramState;
  const bounds = state.upperBounds;
  const children: { labels: Labels<L>; counts: Float64Array; sum: number; count: number }[] = [];
  const find = (labels: Labels<L>): HistogramEntry | undefined =>
    Object.values(state.hashMap).find((entry) => sameLabels(entry.labels, labels));
  const entryOf = (labels: Labels<L>): HistogramEntry => {
    // Made at the child's making; gone only if the histogram was reset since.
    const entry = find(labels);
    if (entry !== undefined) return entry;
    histogram.zero(labels);
    return find(labels)!;
  };
  beforeCollect(histogram, () => {
    for (const child of children) {
      if (child.count === 0) continue;
      const entry = entryOf(child.labels);
      for (let i = 0; i < bounds.length; i += 1)
        if (child.counts[i] !== 0)
          entry.bucketValues[bounds[i]!] = (entry.bucketValues[bounds[i]!] ?? 0) + child.counts[i]!;
      entry.sum += child.sum;
      entry.count += child.count;
      child.counts.fill(0);
      child.sum = 0;
      child.count = 0;
    }
  });
  return (labels) => {
    if (find(labels) === undefined) histogram.zero(labels);
    const child = {
      labels,
      counts: new Float64Array(bounds.length),
      sum: 0,
      count: 0,
      observe(value: number, times = 1) {
        if (!Number.isFinite(value))
          throw new InvariantError(`observed a value that is not a number: ${value}`);
        // Past the last bound it counts only in +Inf (= count), as prom-client does.
        for (let i = 0; i < bounds.length; i += 1)
          if (value <= bounds[i]!) {
            child.counts[i] = child.counts[i]! + times;
            break;
          }
        child.sum += value * times;
        child.count += times;
      },
    };
    children.push(child);
    return child;
  };
}

/**
 * Charts of a run as SVG, rendered headlessly with Vega-Lite → Vega (`View.toSVG`, no browser or canvas):
 * latency percentiles per operation, throughput over time, latency against offered rate.
 */
import { writeFile } from 'node:fs/promises';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { ChartSpec } from './scenario.js';

/** A chart of `name`: a Vega-Lite (v6) spec with `title` and the given parts. */
const chart = (name: string, title: string, spec: Record<string, unknown>): ChartSpec => ({
  name,
  spec: { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', title, ...spec },
});

/** Writes `<base>-<name>.svg` for each chart; returns the files written. */
export async function renderCharts(charts: readonly ChartSpec[], base: string): Promise<string[]> {
  for (const chart of charts) {
    const view = new vega.View(vega.parse(compile(chart.spec as unknown as TopLevelSpec).spec), {
      renderer: 'none',
    });
    await writeFile(`${base}-${chart.name}.svg`, await view.toSVG());
    view.finalize();
  }
  return charts.map((chart) => `${base}-${chart.name}.svg`);
}

/** An operation (and phase or step, e.g. `purchase @ 2000/s`) and its latency percentiles, ms. */
type LatencyRow = { readonly op: string } & Readonly<Record<'p50' | 'p95' | 'p99' | 'p999' | 'max', number>>;

/** Grouped bars: p50/p95/p99/p99.9/max per operation, ms on a log scale; an optional target line. */
export function latencyChart(title: string, rows: readonly LatencyRow[]): ChartSpec {
  const keys = ['p50', 'p95', 'p99', 'p999', 'max'] as const;
  const sort = keys.map((k) => (k === 'p999' ? 'p99.9' : k));
  const values = rows.flatMap((r) =>
    keys.flatMap((k, i) =>
      Number.isFinite(r[k]) && r[k] > 0 ? [{ op: r.op, percentile: sort[i], ms: r[k] }] : [],
    ),
  );
  return chart('latency', title, {
    data: { values },
    mark: 'bar',
    width: { step: 14 },
    height: 260,
    encoding: {
      column: { field: 'op', type: 'nominal', title: null, header: { labelAngle: -20, labelAlign: 'right' } },
      x: { field: 'percentile', type: 'ordinal', sort, title: null },
      y: { field: 'ms', type: 'quantitative', scale: { type: 'log' }, title: 'latency, ms (log)' },
      color: { field: 'percentile', type: 'ordinal', sort },
    },
  });
}

/** Requests/s of a series in second `t` of the run (or of the phase series). */
export type RatePoint = { readonly t: number; readonly series: string; readonly perS: number };

/** Lines: requests/s per second of the run, one line per series (offered, achieved, errors, ...). */
export function throughputChart(title: string, points: readonly RatePoint[]): ChartSpec {
  return chart('throughput', title, {
    data: { values: points },
    mark: { type: 'line', interpolate: 'step-after' },
    width: 720,
    height: 260,
    encoding: {
      x: { field: 't', type: 'quantitative', title: 'time, s' },
      y: { field: 'perS', type: 'quantitative', title: 'requests/s' },
      color: { field: 'series', type: 'nominal', title: null },
    },
  });
}

export type CurvePoint = { readonly series: string; offered: number; ms: number; percentile: string };

/** Latency against offered rate (one line per series and percentile), with the SLO as a rule. */
export function curveChart(title: string, points: readonly CurvePoint[], sloMs: number): ChartSpec {
  const log = { type: 'log' };
  return chart('curve', title, {
    width: 720,
    height: 300,
    layer: [
      {
        data: { values: points.filter((p) => Number.isFinite(p.ms) && p.ms > 0) },
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 'offered', type: 'quantitative', scale: log, title: 'offered rate, requests/s (log)' },
          y: { field: 'ms', type: 'quantitative', scale: log, title: 'latency, ms (log)' },
          color: { field: 'series', type: 'nominal', title: null },
          strokeDash: { field: 'percentile', type: 'nominal' },
        },
      },
      {
        data: { values: [{ slo: sloMs }] },
        mark: { type: 'rule', color: 'red' },
        encoding: { y: { field: 'slo', type: 'quantitative' } },
      },
    ],
  });
}

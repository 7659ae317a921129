/**
 * Charts of a run as SVG, rendered headlessly with Vega-Lite → Vega (`View.toSVG`, no browser or canvas):
 * latency percentiles per operation, throughput over time, latency against offered rate.
 */
import { writeFile } from 'node:fs/promises';
import type { TopLevelSpec } from 'vega-lite';
import { round } from './measure.js';
import type { OpenLoopResult } from './open-loop.js';
import { num } from './report.js';
import { SLO, type ChartSpec, type OpenStep } from './scenario.js';

/** A chart of `name`: a Vega-Lite (v6) spec with `title` and the given parts. */
const chart = (name: string, title: string, spec: Record<string, unknown>): ChartSpec => ({
  name,
  spec: { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', title, ...spec },
});

/** Writes `<base>-<name>.svg` for each chart; returns the files written. Vega is loaded here, not with the
 * bench (~0.7 s of CPU): a usage error, `--help` or a run without charts does not pay for it. */
export async function renderCharts(charts: readonly ChartSpec[], base: string): Promise<string[]> {
  const [vega, { compile }] = await Promise.all([import('vega'), import('vega-lite')]);
  for (const { name, spec } of charts) {
    const view = new vega.View(vega.parse(compile(spec as unknown as TopLevelSpec).spec), {
      renderer: 'none',
    });
    await writeFile(`${base}-${name}.svg`, await view.toSVG());
    view.finalize();
  }
  return charts.map((c) => `${base}-${c.name}.svg`);
}

/** An operation (and phase or step, e.g. `purchase @ 2000/s`) and its latency percentiles, ms. */
type LatencyRow = { readonly op: string } & Readonly<Record<'p50' | 'p95' | 'p99' | 'p999' | 'max', number>>;

/** Grouped bars: p50/p95/p99/p99.9/max per operation, ms on a log scale. */
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

type Kind = 'offered' | 'answered' | 'errors';

/** Lines: requests/s in each second of `steps` on one clock (each from its `startS`), `kinds` of each as series
 * (`series` of the step, then the kind). */
export function timelineChart<S extends { readonly result: OpenLoopResult; readonly startS?: number }>(
  title: string,
  steps: readonly S[],
  series: (s: S) => string = () => '',
  kinds: readonly Kind[] = ['offered', 'answered', 'errors'],
): ChartSpec {
  const field = { offered: 'offered', answered: 'completed', errors: 'errors' } as const;
  const at = (s: S, t: number) => round((s.startS ?? 0) + t, 1);
  const values = steps.flatMap((s) =>
    s.result.timeline.flatMap((b) =>
      kinds.map((k) => ({ t: at(s, b.t), series: `${series(s)}${k}`, perS: b[field[k]] })),
    ),
  );
  return chart('throughput', title, {
    data: { values },
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

/** A step-up's charts: p50/p99 against offered rate (one line per group and percentile, the SLO as a rule),
 * latency at the `marked` steps, offered vs answered per second. */
export function stepCharts(
  titles: readonly [curve: string, latency: string, throughput: string],
  groups: readonly { label: string; steps: readonly OpenStep[]; marked: readonly (OpenStep | undefined)[] }[],
  kinds?: readonly Kind[],
): ChartSpec[] {
  const curve = groups.flatMap((g) =>
    g.steps.flatMap((s) =>
      (['p50', 'p99'] as const).map((p) => ({ series: g.label, offered: s.offered, ms: s[p], p })),
    ),
  );
  const log = { type: 'log' };
  const marked = groups.flatMap((g) => g.steps.filter((s) => g.marked.includes(s)).map((s) => ({ g, s })));
  const steps = groups.flatMap((g) => g.steps.map((s) => ({ ...s, group: g.label })));
  const lines = {
    data: { values: curve.filter((c) => Number.isFinite(c.ms) && c.ms > 0) },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'offered', type: 'quantitative', scale: log, title: 'offered rate, requests/s (log)' },
      y: { field: 'ms', type: 'quantitative', scale: log, title: 'latency, ms (log)' },
      color: { field: 'series', type: 'nominal', title: null },
      strokeDash: { field: 'p', type: 'nominal', title: 'percentile' },
    },
  };
  const slo = { data: { values: [{ slo: SLO.p99Ms }] }, mark: { type: 'rule', color: 'red' } };
  return [
    chart('curve', titles[0], {
      width: 720,
      height: 300,
      layer: [lines, { ...slo, encoding: { y: { field: 'slo', type: 'quantitative' } } }],
    }),
    latencyChart(
      titles[1],
      marked.map(({ g, s }) => ({ ...s, op: `${g.label} @ ${num(s.offered)}/s` })),
    ),
    timelineChart(titles[2], steps, (s) => `${s.group} `, kinds),
  ];
}

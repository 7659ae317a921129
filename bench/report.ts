/** How a run is reported: numbers, the plain-text table, and `--repeat n` summaries combined. */
import type { ResultTable } from './scenario.js';

/** Thousands separators, at most `digits` decimals. */
export function num(value: number, digits = 0): string {
  return value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/** Σ f(x) over the list. */
export const sum = <T>(list: readonly T[], f: (x: T) => number): number => list.reduce((n, x) => n + f(x), 0);

/** Notes from lines, lists of lines and `cond && line` (false, undefined and null left out). */
export const lines = (...parts: (string | false | undefined | null | readonly string[])[]): string[] =>
  parts.flatMap((p) => (typeof p === 'string' ? [p] : p || []));

/** Table columns `<k> ms` (`p999` as `p99.9 ms`), each cell `ms(row, k)`. */
export const msColumns = <T, K extends string>(keys: readonly K[], ms: (row: T, k: K) => string | number) =>
  keys.map((k) => [`${k === 'p999' ? 'p99.9' : k} ms`, (row: T) => ms(row, k)] as const);

/** `n` with `digits` decimals (default 1), '-' when unknown. */
export const fixed = (n: number | undefined, digits = 1): string =>
  n === undefined ? '-' : n.toFixed(digits);

/** A plain-text table: numbers right-aligned, text left-aligned. */
export function formatTable(table: ResultTable): string {
  const cells = [table.columns, ...table.rows].map((row) =>
    row.map((cell) => (typeof cell === 'number' ? num(cell, Number.isInteger(cell) ? 0 : 1) : cell)),
  );
  const widths = table.columns.map((_, i) => Math.max(...cells.map((row) => (row[i] ?? '').length)));
  const numeric = (i: number) =>
    table.rows.length > 0 && table.rows.every((row) => typeof row[i] === 'number');
  const line = (row: readonly string[]) =>
    row
      .map((cell, i) => (numeric(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const [header, ...body] = cells;
  return [line(header!), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

/** The median of numbers sorted ascending. */
const median = (sorted: readonly number[]) =>
  (sorted[Math.floor((sorted.length - 1) / 2)]! + sorted[Math.ceil((sorted.length - 1) / 2)]!) / 2;

/** One summary from n runs' summaries: each number as its median with `<key>_min` / `<key>_max`; `oversold` and
 * `undersold` as every run's count (never a median); any other value once if every run has it, else per run. */
export function combineRepeats(
  scenario: string,
  summaries: readonly Record<string, unknown>[],
  wanted: number,
) {
  const ok = summaries.length === wanted && summaries.every((s) => s['ok'] === true);
  const combined: Record<string, unknown> = { scenario, ok, repeat: wanted, runs: summaries.length };
  const own = ['scenario', 'ok', 'result_file', 'charts'];
  for (const key of new Set(summaries.flatMap((s) => Object.keys(s).filter((k) => !own.includes(k))))) {
    const values = summaries.map((s) => s[key]);
    const numbers = values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
    const same = values.every((v) => JSON.stringify(v) === JSON.stringify(values[0]));
    const perRun = key === 'oversold' || key === 'undersold'; // never a median: every run's count
    if (perRun || numbers.length !== values.length || numbers.length === 0)
      combined[key] = same && !perRun ? values[0] : values;
    else {
      const sorted = numbers.sort((a, b) => a - b);
      combined[key] = Math.round(median(sorted) * 1000) / 1000;
      [combined[`${key}_min`], combined[`${key}_max`]] = [sorted[0], sorted[sorted.length - 1]];
    }
  }
  combined['result_files'] = summaries.map((s) => s['result_file']);
  return combined;
}

/** A table from one cell function per column (name, cell). */
export function tableOf<T>(
  columns: readonly (readonly [string, (row: T) => string | number])[],
  rows: readonly T[],
) {
  return {
    columns: columns.map(([name]) => name),
    rows: rows.map((row) => columns.map(([, cell]) => cell(row))),
  };
}

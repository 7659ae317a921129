/** `--repeat n`: one summary from n runs' summaries, each number as its median with `<key>_min` / `<key>_max`. */

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function combineRepeats(
  scenario: string,
  summaries: readonly Record<string, unknown>[],
  wanted: number,
): Record<string, unknown> {
  const combined: Record<string, unknown> = {
    scenario,
    ok: summaries.length === wanted && summaries.every((s) => s['ok'] === true),
    repeat: wanted,
    runs: summaries.length,
  };
  const keys = [...new Set(summaries.flatMap((s) => Object.keys(s)))];
  for (const key of keys) {
    if (key === 'scenario' || key === 'ok' || key === 'result_file' || key === 'charts') continue;
    const values = summaries.map((s) => s[key]);
    const numbers = values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
    if (numbers.length === values.length && numbers.length > 0) {
      combined[key] = round(median(numbers));
      combined[`${key}_min`] = Math.min(...numbers);
      combined[`${key}_max`] = Math.max(...numbers);
    } else if (key === 'oversold' || key === 'undersold') {
      combined[key] = values; // never a median: every run's count
    } else {
      combined[key] = values.every((v) => JSON.stringify(v) === JSON.stringify(values[0]))
        ? values[0]
        : values;
    }
  }
  combined['result_files'] = summaries.map((s) => s['result_file']);
  return combined;
}

const round = (n: number): number => Math.round(n * 1000) / 1000;

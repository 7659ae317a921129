/** Scenario knobs from `--param key=value`: parsed and range-checked where a scenario reads them. */
import type { BenchOptions } from './types.js';

export function numberParam(
  options: BenchOptions,
  key: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const raw = options.params[key];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n) || n < min || n > max)
    throw new Error(`--param ${key}=${raw}: expected a number from ${min} to ${max}`);
  return n;
}

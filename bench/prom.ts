/** Reads the service's `GET /metrics` (Prometheus text) into a map for before/after deltas. */
import { request } from 'undici';

/** Sample name with its label set as printed (`name{a="b"}`) → value. */
export type Samples = ReadonlyMap<string, number>;

/** `GET <url>/metrics` of one node, directly: the service answers it only to a direct loopback client. */
export async function scrape(url: string): Promise<Samples> {
  const res = await request(`${url}/metrics`, { headersTimeout: 10_000, bodyTimeout: 10_000 });
  const text = await res.body.text();
  if (res.statusCode === 404)
    throw new Error(
      `GET ${url}/metrics answered 404: /metrics is served only to a direct loopback client, never through nginx; ` +
        'give a node, not the balancer (e.g. --url http://127.0.0.1:8081)',
    );
  if (res.statusCode !== 200)
    throw new Error(`GET ${url}/metrics answered ${res.statusCode}: ${text.slice(0, 200)}`);
  return parseSamples(text);
}

/** Every node's `/metrics`, each read directly, summed sample by sample (counters and sums add up). */
export async function scrapeNodes(urls: readonly string[]): Promise<Samples> {
  const all = await Promise.all(urls.map(scrape));
  if (all.length === 1) return all[0]!;
  const sum = new Map<string, number>();
  for (const samples of all) for (const [k, v] of samples) sum.set(k, (sum.get(k) ?? 0) + v);
  return sum;
}

export function parseSamples(text: string): Samples {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([A-Za-z_:][\w:]*(?:\{[^}]*\})?)\s+(\S+)/.exec(line);
    if (match) samples.set(match[1]!, Number(match[2]));
  }
  return samples;
}

/** after − before for one sample (a missing sample counts as 0). */
export function delta(before: Samples, after: Samples, sample: string): number {
  return (after.get(sample) ?? 0) - (before.get(sample) ?? 0);
}

/** after − before summed over every label set of one sample name (`name` and `name{...}`) holding all `labels`. */
export function familyDelta(before: Samples, after: Samples, name: string, ...labels: string[]): number {
  let sum = 0;
  for (const [sample, value] of after)
    if ((sample === name || sample.startsWith(`${name}{`)) && labels.every((l) => sample.includes(l)))
      sum += value - (before.get(sample) ?? 0);
  return sum;
}

/** Mean of a histogram over an interval, over its label sets holding all `labels`; undefined when none observed. */
export function histogramMean(before: Samples, after: Samples, name: string, ...labels: string[]) {
  const count = familyDelta(before, after, `${name}_count`, ...labels);
  return count > 0 ? familyDelta(before, after, `${name}_sum`, ...labels) / count : undefined;
}

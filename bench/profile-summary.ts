/**
 * Summarises a V8 .cpuprofile by area and hottest functions, optionally only inside phases of a result file:
 *   npx tsx bench/profile-summary.ts <file.cpuprofile> [--result <bench/out/x.json> --phase <text>] [--top n]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface Profile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

type Window = { start: number; end: number };

/** The package (node_modules/<pkg>), project folder (src/http, actors/product) or V8 bucket of a frame. */
function areaOf(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:')) return url;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  const own = /\/(?:dist\/)?((?:src|actors)\/[^/]+)(?:\/|\.js)/.exec(url);
  return own ? own[1]! : url;
}

function summarise(profile: Profile, windows: readonly Window[] | undefined, top: number): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const [areas, functions] = [new Map<string, number>(), new Map<string, number>()];
  const add = (m: Map<string, number>, key: string, us: number) => m.set(key, (m.get(key) ?? 0) + us);
  let [at, wallUs, busyUs] = [profile.startTime, 0, 0];
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    at += dt;
    if (windows !== undefined && !windows.some((w) => at >= w.start && at < w.end)) return;
    wallUs += dt;
    const frame = byId.get(id)!.callFrame;
    if (frame.functionName === '(idle)') return;
    busyUs += dt;
    const area = areaOf(frame.url, frame.functionName);
    add(areas, area, dt);
    add(functions, `${frame.functionName || '(anonymous)'} ${area}:${frame.lineNumber + 1}`, dt);
  });
  const share = (us: number) => `${((us / busyUs) * 100).toFixed(1).padStart(5)}%`;
  const ranked = (m: Map<string, number>) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => `  ${share(us)}  ${name}`);
  return [
    `${(wallUs / 1e6).toFixed(1)} s of samples, ${(busyUs / 1e6).toFixed(1)} s busy (${((busyUs / wallUs) * 100).toFixed(0)}% of one core); shares below are of busy time`,
    '',
    'self time by area:',
    ...ranked(areas),
    '',
    'hottest functions (self time):',
    ...ranked(functions),
  ].join('\n');
}

/** A measured phase or step of a result file, as `stepDetails` and cost's phases write it. */
type Phase = { label?: string; monotonicUs?: Window };

function phaseWindows(resultFile: string, text: string): Window[] {
  const result = JSON.parse(readFileSync(resultFile, 'utf8')) as {
    details?: { phases?: Phase[]; steps?: Phase[]; idle?: { monotonicUs?: Window } };
  };
  // cost's idle interval is a phase named `idle` here.
  const idle = result.details?.idle?.monotonicUs;
  const phases = [
    ...(result.details?.phases ?? []),
    ...(result.details?.steps ?? []),
    ...(idle ? [{ label: 'idle', monotonicUs: idle }] : []),
  ];
  const windows = phases
    .filter((p) => p.label?.includes(text) === true && p.monotonicUs !== undefined)
    .map((p) => p.monotonicUs!);
  if (windows.length === 0)
    throw new Error(`no phase of ${resultFile} has a label containing ${JSON.stringify(text)}`);
  return windows;
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { result: { type: 'string' }, phase: { type: 'string' }, top: { type: 'string', default: '25' } },
});
if (positionals.length !== 1 || (values.result === undefined) !== (values.phase === undefined)) {
  process.stderr.write(
    'usage: npx tsx bench/profile-summary.ts <file.cpuprofile> [--result <bench result .json> --phase <label text>] [--top n]\n',
  );
  process.exit(2);
}
const windows = values.result === undefined ? undefined : phaseWindows(values.result, values.phase!);
const profile = JSON.parse(readFileSync(positionals[0]!, 'utf8')) as Profile;
process.stdout.write(`${summarise(profile, windows, Number(values.top))}\n`);

/**
 * The load engine. Open loop: requests scheduled at the offered rate (uniform spacing, as wrk2), whatever the
 * service answers; each latency from the request's INTENDED send time (coordinated omission corrected).
 * Closed loop (`{ concurrency: n }`): n workers, each sends its next request only after the answer; latency
 * from the actual send. Either way one HdrHistogram (µs) per operation.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Http1Connection, type Answer } from './http1.js';
import { monotonicUs, newLatencyHistogram } from './load.js';
import { lines, num } from './report.js';
import type { BenchIO } from './scenario.js';

/** What the connections send of a request: `body` as JSON. */
export type Request = Pick<OpenLoopRequest, 'method' | 'path' | 'headers' | 'body'>;

/**
 * A fixed set of keep-alive HTTP/1.1 connections in rotation: each request takes the one idle longest, so all
 * stay open and carry traffic as distinct clients would (a pool would leave most idle).
 */
export class ConnectionSet {
  private readonly all: Http1Connection[];
  /** Idle connections, the one idle longest first; requests waiting for one, the oldest first. */
  private readonly idle: Http1Connection[];
  private readonly waiting: ((connection: Http1Connection) => void)[] = [];
  private readonly host: string;
  private readonly sweep: NodeJS.Timeout;
  /** Sockets open now. */
  connected = 0;
  /** Most requests waiting for a free connection at once. */
  maxWaiting = 0;

  /** `timeout`: the longest wait for a whole answer (connecting included), ms. */
  constructor(
    readonly origin: string,
    readonly size: number,
    timeout = 30_000,
  ) {
    const url = new URL(origin);
    this.host = url.host;
    const count = (delta: number) => (this.connected += delta);
    this.all = Array.from({ length: size }, () => new Http1Connection(url.hostname, Number(url.port), count));
    this.idle = [...this.all];
    this.sweep = setInterval(() => {
      const late = performance.now() - timeout;
      for (const c of this.all)
        if (c.busy && c.sentAt < late) c.destroy('TIMEOUT', `no answer within ${timeout} ms`);
    }, 1000).unref();
  }

  /** Opens every connection (a GET on each, `concurrency` at a time); returns the sockets open after. */
  async open(path: string, concurrency = 500): Promise<number> {
    const open = (i: number) => this.all[i]!.request(this.text({ method: 'GET', path }));
    await inParallel(this.size, concurrency, (i) => open(i).catch(() => undefined)); // counted by `connected`
    return this.connected;
  }

  /** One request on the connection idle longest. */
  async send(request: Request): Promise<Answer> {
    const connection =
      this.idle.shift() ??
      (await new Promise<Http1Connection>((resolve) => {
        this.waiting.push(resolve);
        this.maxWaiting = Math.max(this.maxWaiting, this.waiting.length);
      }));
    try {
      return await connection.request(this.text(request));
    } finally {
      const waiter = this.waiting.shift();
      if (waiter === undefined) this.idle.push(connection);
      else waiter(connection);
    }
  }

  close(): void {
    clearInterval(this.sweep);
    for (const c of this.all) c.destroy();
  }

  private text({ method, path, headers = {}, body }: Request): string {
    let head = `${method} ${path} HTTP/1.1\r\nhost: ${this.host}\r\n`;
    for (const name in headers) head += `${name}: ${headers[name]}\r\n`;
    if (body === undefined) return `${head}\r\n`;
    return `${head}content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  }
}

/** `fn(0)` … `fn(count − 1)`, each awaited, `concurrency` at a time. */
export async function inParallel(count: number, concurrency: number, fn: (i: number) => Promise<unknown>) {
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < count; i = next++) await fn(i);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

/** How an answer counts: under which operation (default the request's), error (default status ≥ 400), label. */
export type AnswerClass = Readonly<{ op?: string; error?: boolean; label?: string }>;

/** performance.now() times of the phase's start, a request's intended send time and its answer. */
export type AnswerTiming = Readonly<{ startMs: number; intendedMs: number; doneMs: number }>;

export interface OpenLoopRequest {
  readonly op: string;
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string;
  answer?(
    status: number,
    headers: Answer['headers'],
    body: string,
    at: AnswerTiming,
  ): AnswerClass | undefined;
  /** No HTTP answer (refused, reset, timeout). */
  transportError?(code: string): void;
}

export interface OpenLoopPhase {
  readonly connections: ConnectionSet;
  /** Arrivals/s (several requests of one arrival share its intended time: duplicate clicks), or a closed loop. */
  readonly rate: number | { readonly concurrency: number };
  readonly durationS: number;
  readonly label: string;
  readonly io: BenchIO;
  /** The request(s) of arrival `seq` (a closed loop's worker awaits them all); undefined ends the phase. */
  next(seq: number): OpenLoopRequest | readonly OpenLoopRequest[] | undefined;
  /** Stop after this many arrivals even if time remains. */
  readonly maxArrivals?: number;
}

/** Per operation: every HTTP answer's latency (µs from the intended send time), counts, answers by label. */
const newOpStats = () => ({
  latency: newLatencyHistogram(),
  ...{ answers: 0, errors: 0, transportErrors: 0, statuses: {} as Record<string, number> },
});
export type OpStats = ReturnType<typeof newOpStats>;
/** Second `t` of the phase: requests intended in it, answers (or transport errors) completed in it. */
export type SecondStats = { readonly t: number; offered: number; completed: number; errors: number };
/** A phase's answers in and after its window, per operation and per second, and the generator's own figures. */
export type OpenLoopResult = Awaited<ReturnType<typeof runOpenLoop>>;

export async function runOpenLoop(phase: OpenLoopPhase) {
  const { connections, io, rate } = phase;
  const concurrency = typeof rate === 'number' ? undefined : rate.concurrency;
  const intervalMs = typeof rate === 'number' ? 1000 / rate : 0;
  const scheduled = typeof rate === 'number' ? Math.floor(rate * phase.durationS) : Infinity;
  const maxArrivals = Math.min(phase.maxArrivals ?? Infinity, scheduled);
  const ops = new Map<string, OpStats>();
  const timeline: SecondStats[] = [];
  const second = (t: number): SecondStats => {
    const i = Math.max(0, Math.floor(t / 1000));
    while (timeline.length <= i) timeline.push({ t: timeline.length, offered: 0, completed: 0, errors: 0 });
    return timeline[i]!;
  };
  const schedulerLag = newLatencyHistogram();
  const windowMs = phase.durationS * 1000;
  /** Requests scheduled, erring; answers (ok ones) inside the window; requests in flight. */
  const n = { scheduled: 0, errors: 0, inWindow: 0, okInWindow: 0, inFlight: 0 };
  connections.maxWaiting = 0;
  const cpuBefore = process.cpuUsage();
  const monotonicStart = monotonicUs();
  const start = performance.now() + 5;

  /** Counts an answer (or a transport error) of `op` to a request intended at `intended`. */
  const count = ({ op, error, label }: Required<AnswerClass>, intended: number, transport: boolean) => {
    const done = performance.now();
    const stats = ops.get(op) ?? ops.set(op, newOpStats()).get(op)!;
    const bucket = second(done - start);
    stats.statuses[label] = (stats.statuses[label] ?? 0) + 1;
    bucket.completed += 1;
    if (transport) stats.transportErrors += 1;
    else {
      stats.answers += 1;
      stats.latency.record(Math.max(1, Math.round((done - intended) * 1000)));
      n.inWindow += done - start <= windowMs ? 1 : 0;
      n.okInWindow += done - start <= windowMs && !error ? 1 : 0;
    }
    if (error) {
      stats.errors += 1;
      n.errors += 1;
      bucket.errors += 1;
    }
  };

  /** Sends `request`; resolves when it is answered, true when it got no HTTP answer. */
  const fire = async (request: OpenLoopRequest, intended: number): Promise<boolean> => {
    n.scheduled += 1;
    n.inFlight += 1;
    second(intended - start).offered += 1;
    try {
      const { status, headers, body } = await connections.send(request);
      const timing = { startMs: start, intendedMs: intended, doneMs: performance.now() };
      const cls = request.answer?.(status, headers, body, timing);
      const error = cls?.error ?? status >= 400;
      count({ op: cls?.op ?? request.op, error, label: cls?.label ?? String(status) }, intended, false);
      return false;
    } catch (err) {
      const code = (err as { code?: string }).code ?? (err as Error).name;
      request.transportError?.(code);
      count({ op: request.op, error: true, label: `transport ${code}` }, intended, true);
      return true;
    } finally {
      n.inFlight -= 1;
      if (n.inFlight === 0) drained?.();
    }
  };

  let seq = 0;
  let stopped = false;
  /** The request(s) of the next arrival; undefined when the phase is over. */
  const arrival = (): readonly OpenLoopRequest[] | undefined => {
    if (stopped || seq >= maxArrivals || io.signal.aborted) return undefined;
    const requests = phase.next(seq);
    seq += 1;
    if (requests === undefined) stopped = true;
    return requests === undefined ? undefined : ([] as OpenLoopRequest[]).concat(requests);
  };
  let drained: (() => void) | undefined;
  const openLoop = () =>
    new Promise<void>((resolve) => {
      const tick = (): void => {
        const now = performance.now();
        for (let intended = start + seq * intervalMs; intended <= now; intended = start + seq * intervalMs) {
          const requests = arrival();
          if (requests === undefined) return resolve();
          schedulerLag.record(Math.max(1, Math.round((now - intended) * 1000)));
          for (const request of requests) void fire(request, intended);
        }
        setTimeout(tick, Math.min(1, Math.max(0, start + seq * intervalMs - performance.now())));
      };
      tick();
    });
  const worker = async (): Promise<void> => {
    while (performance.now() - start <= windowMs) {
      const requests = arrival();
      if (requests === undefined) return;
      const now = performance.now();
      const failed = await Promise.all(requests.map((request) => fire(request, now)));
      if (failed.includes(true)) await sleep(10); // no hot loop against a dead socket
    }
  };

  let lastLine = { t: 0, completed: 0, offered: 0 };
  const ticker = setInterval(() => {
    const t = (performance.now() - start) / 1000;
    const completed = timeline.reduce((s, b) => s + b.completed, 0);
    const dt = Math.max(0.001, t - lastLine.t);
    const achieved = (completed - lastLine.completed) / dt;
    const offered = (n.scheduled - lastLine.offered) / dt;
    const cpu = process.cpuUsage(cpuBefore);
    const cores = (cpu.user + cpu.system) / 1e6 / Math.max(0.001, t);
    const behind = concurrency === undefined && achieved < offered * 0.9 && t > 1.5;
    io.progress(
      `[${phase.label}] ${t.toFixed(0).padStart(3)}s  ${concurrency === undefined ? 'offered' : 'sent'} ${num(offered).padStart(6)}/s  achieved ${num(achieved).padStart(6)}/s  ` +
        `errors ${num(n.errors)} (${n.scheduled > 0 ? ((n.errors / n.scheduled) * 100).toFixed(1) : '0.0'}%)  in flight ${num(n.inFlight)}  ` +
        `sockets ${num(connections.connected)}  gen cpu ${cores.toFixed(2)}${behind ? '  ACHIEVED < OFFERED' : ''}`,
    );
    lastLine = { t, completed, offered: n.scheduled };
  }, 1000);

  await sleep(5);
  if (concurrency === undefined) await openLoop();
  else await Promise.all(Array.from({ length: concurrency }, worker));
  if (n.inFlight > 0) await new Promise<void>((resolve) => (drained = resolve));
  clearInterval(ticker);
  const wallS = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const generatorCores = (cpu.user + cpu.system) / 1e6 / wallS;
  // An open loop stopped early (`next` ended it, `maxArrivals`) is judged over the time it sent.
  const windowS =
    (concurrency === undefined && Math.min(phase.durationS, (seq * intervalMs) / 1000)) || phase.durationS;
  const achievedPerS = n.inWindow / windowS;
  const offeredPerS = n.scheduled / windowS;
  const lagMs = schedulerLag.count > 0 ? schedulerLag.percentile(99) / 1000 : 0;
  const warnings = lines(
    concurrency === undefined &&
      achievedPerS < offeredPerS * 0.95 &&
      `${phase.label}: achieved ${num(achievedPerS)}/s < offered ${num(offeredPerS)}/s (answers inside the window): the service (or the generator) fell behind`,
    lagMs > 10 &&
      `${phase.label}: the generator sent late (scheduler lag p99 ${lagMs.toFixed(1)} ms, generator ${generatorCores.toFixed(2)} cores): it is short of CPU, latencies include its delay`,
    connections.maxWaiting > 0 &&
      connections.maxWaiting >= connections.size &&
      `${phase.label}: up to ${num(connections.maxWaiting)} requests waited for one of the ${num(connections.size)} connections (counted in their latency)`,
  );
  return {
    label: phase.label,
    offeredPerS,
    windowS,
    scheduled: n.scheduled,
    errors: n.errors,
    achievedPerS,
    okPerS: n.okInWindow / windowS,
    ops,
    timeline,
    schedulerLag,
    maxQueued: connections.maxWaiting,
    generatorCores,
    wallS,
    warnings,
    /** On the monotonic clock (that of V8 .cpuprofile timestamps): bench/profile-summary.ts `--phase`. */
    monotonicUs: { start: monotonicStart, end: monotonicUs() },
  };
}

/**
 * WebSocket stock fan-out: `--connections` subscribers over two nodes and `products` hot products, a purchase
 * stream on them: delivery latency (the owner's publish stamp → parsed), frames/s, memory per connection.
 */
import { readFileSync } from 'node:fs';
import { createHistogram } from 'node:perf_hooks';
import { Agent, Pool } from 'undici';
import WebSocket from 'ws';
import { createProduct } from '../api.js';
import { readTruth } from '../checks.js';
import { latencySummary, round } from '../measure.js';
import { tableOf } from '../report.js';
import { defineScenario, type Run } from '../scenario.js';
import type { ScenarioResult } from '../types.js';

const nowMs = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resident memory of a process, bytes. */
function rssOf(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'));
  return Number(/(\d+)/.exec(line ?? '')?.[1] ?? 0) * 1024;
}

interface Sub {
  ws: WebSocket;
  productId: number;
  stock: number;
  version: number;
}

async function run(run: Run): Promise<ScenarioResult> {
  const { options, io } = run;
  const productCount = run.param('products', 3, 1, 100);
  const rate = options.rate ?? 60;
  const subscribers = options.connections;
  const buyers = Array.from({ length: 1000 }, (_, i) => `ws-${i}`);
  const { cluster, tokens } = await run.setUp({
    cluster: { nodes: 2, nginx: false, paymentLatencyMs: 5 },
    users: buyers,
    backgroundMs: 0,
  });
  const nodes = cluster.nodes;
  if (nodes.length !== 2) throw new Error('ws-fanout needs the two nodes it starts (no --url)');
  const http = nodes.map((n) => new Pool(n.url, { connections: 64 }));
  io.onCleanup(() => Promise.all(http.map((p) => p.close())).then(() => undefined));
  const initial = 10_000_000;
  const products: number[] = [];
  for (let i = 0; i < productCount; i += 1) {
    products.push((await createProduct(http[0]!, tokens, `ws-hot-${i}`, initial, 'actor', 100)).id);
  }

  const rssBefore = nodes.map((n) => rssOf(n.pid));
  const subs: Sub[] = [];
  const latency = createHistogram();
  let measuring = false;
  let delivered = 0;
  let deliveredTotal = 0;
  io.onCleanup(() => {
    for (const s of subs) s.ws.terminate();
  });
  const open = (i: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const node = nodes[i % 2]!;
      const productId = products[Math.floor(i / 2) % productCount]!;
      const ws = new WebSocket(`${node.url.replace(/^http/, 'ws')}/ws`, { perMessageDeflate: false });
      const sub: Sub = { ws, productId, stock: -1, version: -1 };
      ws.on('message', (data: Buffer) => {
        const frame = JSON.parse(data.toString()) as {
          type: string;
          stock: number;
          version: number;
          at?: number;
        };
        if (frame.type !== 'stock') return;
        if (frame.version > sub.version) {
          sub.version = frame.version;
          sub.stock = frame.stock;
        }
        if (frame.at === undefined) {
          resolve(); // the snapshot
          return;
        }
        deliveredTotal += 1;
        if (!measuring) return;
        delivered += 1;
        latency.record(Math.max(1, Math.round((nowMs() - frame.at) * 1000)));
      });
      ws.once('open', () => ws.send(JSON.stringify({ op: 'subscribe', ids: [productId] })));
      ws.once('error', reject);
      subs.push(sub);
    });
  const opened = Date.now();
  for (let i = 0; i < subscribers; i += 500) {
    await Promise.all(Array.from({ length: Math.min(500, subscribers - i) }, (_, k) => open(i + k)));
    io.progress(`ws-fanout: ${Math.min(subscribers, i + 500)} subscribers with their snapshot`);
  }
  const openSeconds = (Date.now() - opened) / 1000;
  await sleep(2_000);
  const rssAfter = nodes.map((n) => rssOf(n.pid));

  // The purchase stream: `rate` purchases/s, open loop, spread over the products and both nodes.
  const agent = new Agent({ connections: 128 });
  io.onCleanup(() => agent.close());
  const answers: Record<string, number> = {};
  let seq = 0;
  const purchase = async () => {
    const i = (seq += 1);
    const node = nodes[i % 2]!;
    const res = await agent
      .request({
        origin: node.url,
        path: '/purchases',
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: tokens.bearer(buyers[i % buyers.length]!),
          'idempotency-key': `ws${options.runTag}-${i}`,
        },
        body: JSON.stringify({ productId: products[i % productCount], quantity: 1 }),
      })
      .catch(() => undefined);
    const key = res === undefined ? 'transport' : String(res.statusCode);
    await res?.body.dump();
    answers[key] = (answers[key] ?? 0) + 1;
  };
  const inFlight = new Set<Promise<void>>();
  measuring = true;
  const started = nowMs();
  const end = started + options.durationS * 1000;
  let lastReport = started;
  let lastDelivered = 0;
  while (nowMs() < end && !io.signal.aborted) {
    const due = Math.floor(((nowMs() - started) / 1000) * rate) - seq;
    for (let k = 0; k < due; k += 1) {
      const p = purchase();
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
    }
    if (nowMs() - lastReport >= 1000) {
      io.progress(`ws-fanout: ${delivered - lastDelivered} msgs/s delivered, ${seq} purchases sent`);
      lastDelivered = delivered;
      lastReport = nowMs();
    }
    await sleep(5);
  }
  const wallS = (nowMs() - started) / 1000;
  measuring = false;
  await Promise.all(inFlight);

  // Every subscriber must end on its product's stock in MySQL.
  const final = await readTruth(products);
  const until = Date.now() + 10_000;
  let behind = subs.filter((s) => s.stock !== final.get(s.productId)?.stock);
  while (behind.length > 0 && Date.now() < until) {
    await sleep(100);
    behind = behind.filter((s) => s.stock !== final.get(s.productId)?.stock);
  }
  const nodeStats = await Promise.all(
    http.map(async (p) => {
      const res = await p.request({ path: '/health', method: 'GET' });
      return ((await res.body.json()) as { ws?: Record<string, number> }).ws ?? {};
    }),
  );
  const perConnection = nodes.map((_, k) => (rssAfter[k]! - rssBefore[k]!) / (subscribers / 2));
  const lat = latencySummary(latency);
  const ok = behind.length === 0 && subs.length === subscribers;
  const summary = {
    subscribers,
    products: productCount,
    purchase_rate_per_s: rate,
    purchases_201: answers['201'] ?? 0,
    delivered_per_s: Math.round(delivered / wallS),
    delivery_p50_ms: lat.p50,
    delivery_p99_ms: lat.p99,
    delivery_max_ms: lat.max,
    bytes_per_connection_node1: Math.round(perConnection[0]!),
    bytes_per_connection_node2: Math.round(perConnection[1]!),
    subscribers_not_on_final_stock: behind.length,
    slow_consumers_dropped: nodeStats.reduce((s, n) => s + (n['slowConsumersDropped'] ?? 0), 0),
    connect_s: round(openSeconds, 1),
    duration_s: round(wallS, 1),
  };
  return {
    ok,
    summary,
    table: tableOf<number>(
      [
        ['node', (k) => nodes[k]!.id],
        ['subscribers', (k) => nodeStats[k]!['connections'] ?? 0],
        ['RSS before MB', (k) => round(rssBefore[k]! / 2 ** 20, 1)],
        ['RSS after MB', (k) => round(rssAfter[k]! / 2 ** 20, 1)],
        ['bytes/conn', (k) => Math.round(perConnection[k]!)],
        ['published', (k) => nodeStats[k]!['published'] ?? 0],
        ['received', (k) => nodeStats[k]!['received'] ?? 0],
      ],
      nodes.map((_, k) => k),
    ),
    notes: [
      `delivery latency = subscriber parse time − the owner's publish stamp (after commit and cache write-through); both on this machine's clock`,
      `the subscribers run in the bench process (one JS thread parsing every frame): at high rates its queueing is part of the latency`,
      `answers: ${JSON.stringify(answers)}; frames with a change received in total: ${deliveredTotal}`,
      behind.length > 0
        ? `${behind.length} subscribers did not end on the MySQL stock`
        : 'every subscriber ended on the MySQL stock of its product',
    ],
    details: { latency: lat, answers, nodeStats, rssBefore, rssAfter, products },
  };
}

export default defineScenario({
  name: 'ws-fanout',
  describe:
    '10,000 WebSocket stock subscribers over two nodes, a purchase stream on a few hot products: delivery latency, msgs/s, memory per connection',
  defaults: { durationS: 15, connections: 10_000, rate: 60 },
  modes: ['open'],
  run,
});

/**
 * WebSocket stock fan-out: `--connections` subscribers over two nodes and `products` hot products, an
 * open-loop purchase stream on them: delivery latency (the owner's publish stamp → parsed), frames/s, memory
 * per connection.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { readFileSync } from 'node:fs';
import { request } from 'undici';
import WebSocket from 'ws';
import { until } from '../../scripts/until.js';
import { readTruth } from '../stores.js';
import { ConnectionSet, runOpenLoop } from '../open-loop.js';
import { newLatencyHistogram } from '../load.js';
import { latencySummary, round } from '../measure.js';
import { sum, tableOf } from '../report.js';
import { defineScenario } from '../scenario.js';

const STOCK = 10_000_000;

/** Resident memory of a process, bytes. */
const rssOf = (pid: number): number =>
  Number(/VmRSS:\s*(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;

type Frame = { type: string; stock: number; version: number; at?: number };

export default defineScenario({
  name: 'ws-fanout',
  describe:
    '10,000 WebSocket stock subscribers over two nodes, a purchase stream on a few hot products: delivery latency, msgs/s, memory per connection',
  params: ['products'],
  ownNodes: 'needs the two nodes it starts',
  defaults: { durationS: 15, connections: 10_000, rate: 60 },
  modes: ['open'],
  async run(run) {
    const { options, io } = run;
    const rate = options.rate ?? 60;
    const subscribers = options.connections;
    const count = run.param('products', 3, 1, 100);
    await run.setUp({ cluster: { nodes: 2, nginx: false, paymentLatencyMs: 5 }, backgroundMs: 0 });
    const nodes = run.cluster.nodes;
    const ids = await run.productSeries(count, STOCK, 'ws-hot');

    // Subscriber i follows product ⌊i/2⌋ mod n on node i mod 2 and keeps the highest version it saw.
    const rssBefore = nodes.map((n) => rssOf(n.pid));
    const subs: { productId: number; stock: number; version: number }[] = [];
    const sockets: WebSocket[] = [];
    io.onCleanup(() => sockets.forEach((ws) => ws.terminate()));
    const latency = newLatencyHistogram();
    const frames = { measuring: false, delivered: 0, total: 0 };
    const open = (i: number) =>
      new Promise<void>((resolve, reject) => {
        const sub = { productId: ids[Math.floor(i / 2) % ids.length]!, stock: -1, version: -1 };
        const ws = new WebSocket(`${nodes[i % 2]!.url.replace(/^http/, 'ws')}/ws`, {
          perMessageDeflate: false,
        });
        ws.on('message', (data: Buffer) => {
          const frame = JSON.parse(data.toString()) as Frame;
          if (frame.type !== 'stock') return;
          if (frame.version > sub.version) Object.assign(sub, { version: frame.version, stock: frame.stock });
          if (frame.at === undefined) return resolve(); // the snapshot
          frames.total += 1;
          if (!frames.measuring) return;
          frames.delivered += 1;
          latency.record(
            Math.max(1, Math.round((performance.timeOrigin + performance.now() - frame.at) * 1000)),
          );
        });
        ws.once('open', () => ws.send(JSON.stringify({ op: 'subscribe', ids: [sub.productId] })));
        ws.once('error', reject);
        subs.push(sub);
        sockets.push(ws);
      });
    const connectStart = performance.now();
    for (let i = 0; i < subscribers; i += 500) {
      await Promise.all(Array.from({ length: Math.min(500, subscribers - i) }, (_, k) => open(i + k)));
      io.progress(`ws-fanout: ${Math.min(subscribers, i + 500)} subscribers with their snapshot`);
    }
    const connectS = (performance.now() - connectStart) / 1000;
    await sleep(2_000);
    const rssAfter = nodes.map((n) => rssOf(n.pid));

    // The purchase stream: the shared open loop, half of `rate` to each node, over every product.
    frames.measuring = true;
    const results = await Promise.all(
      nodes.map((node) => {
        const connections = new ConnectionSet(node.url, 64);
        io.onCleanup(() => connections.close());
        const next = (seq: number) => run.purchases(ids[seq % ids.length]!)();
        const phase = { connections, io, rate: rate / 2, durationS: options.durationS, next };
        return runOpenLoop({ ...phase, label: `purchases ${node.id}` });
      }),
    );
    frames.measuring = false;
    const wallS = Math.max(...results.map((r) => r.wallS));

    // Every subscriber must end on its product's stock in MySQL.
    const final = await readTruth(ids);
    const lagging = () => Promise.resolve(subs.filter((s) => s.stock !== final.get(s.productId)?.stock));
    const behind = (await until(lagging, (b) => b.length === 0, 10_000, 100)).value;
    await run.check({ settleMs: 0 });
    const health = await Promise.all(
      nodes.map(async (n) => {
        const res = await request(`${n.url}/health`);
        return ((await res.body.json()) as { ws?: Record<string, number> }).ws ?? {};
      }),
    );
    const perConnection = nodes.map((_, k) => (rssAfter[k]! - rssBefore[k]!) / (subscribers / 2));
    const lat = latencySummary(latency);
    return run.report({
      ok: behind.length === 0 && subs.length === subscribers,
      steps: results.map((result) => ({ result, otherCores: undefined })),
      summary: {
        subscribers,
        products: ids.length,
        purchase_rate_per_s: rate,
        purchases_201: sum([...run.ledger.perProduct.values()], (t) => t.created),
        delivered_per_s: Math.round(frames.delivered / wallS),
        ...{ delivery_p50_ms: lat.p50, delivery_p99_ms: lat.p99, delivery_max_ms: lat.max },
        bytes_per_connection_node1: Math.round(perConnection[0]!),
        bytes_per_connection_node2: Math.round(perConnection[1]!),
        subscribers_not_on_final_stock: behind.length,
        slow_consumers_dropped: sum(health, (h) => h['slowConsumersDropped'] ?? 0),
        connect_s: round(connectS, 1),
        duration_s: round(wallS, 1),
      },
      table: tableOf<number>(
        [
          ['node', (k) => nodes[k]!.id],
          ['subscribers', (k) => health[k]!['connections'] ?? 0],
          ['RSS before MB', (k) => round(rssBefore[k]! / 2 ** 20, 1)],
          ['RSS after MB', (k) => round(rssAfter[k]! / 2 ** 20, 1)],
          ['bytes/conn', (k) => Math.round(perConnection[k]!)],
          ['published', (k) => health[k]!['published'] ?? 0],
          ['received', (k) => health[k]!['received'] ?? 0],
        ],
        nodes.map((_, k) => k),
      ),
      notes: [
        `mode: OPEN LOOP purchases (${rate}/s, half to each node); delivery latency = subscriber parse time − the owner's publish stamp (after commit and cache write-through), one clock`,
        `the subscribers run in the bench process (one JS thread parsing every frame): at high rates its queueing is part of the latency`,
        `frames with a change received in total: ${frames.total}`,
        behind.length > 0
          ? `FAIL: ${behind.length} subscribers did not end on the MySQL stock`
          : 'every subscriber ended on the MySQL stock of its product',
      ],
      details: { latency: lat, health, rssBefore, rssAfter, products: ids },
    });
  },
});

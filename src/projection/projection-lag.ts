import type { Admin, Kafka } from '../storage/kafka.js';

/**
 * The sales projection's consumer lag: events in its topics not yet committed by its consumer group,
 * summed over partitions (a partition the group never committed counts from its low watermark). Read
 * on demand (at scrape time) through an admin client of its own, connected on first use.
 */
export class ProjectionLag {
  private admin: Admin | undefined;
  private connecting: Promise<Admin> | undefined;
  /** Once every topic exists, it is not asked for again (topics are never deleted under a running node). */
  private allTopicsExist = false;

  constructor(
    private readonly kafka: Kafka,
    private readonly groupId: string,
    private readonly topics: readonly string[],
  ) {}

  async events(): Promise<number> {
    const admin = await this.connected();
    // A topic not created yet holds no event to consume (and asking for it logs a Kafka error).
    let topics = this.topics;
    if (!this.allTopicsExist) {
      const existing = new Set(await admin.listTopics());
      topics = this.topics.filter((topic) => existing.has(topic));
      this.allTopicsExist = topics.length === this.topics.length;
    }
    if (topics.length === 0) return 0;
    // Every request settles before an error is thrown: none is left opening a connection behind close().
    // The admin reconnects by itself at the next read after a broker comes back.
    const settled = await Promise.allSettled([
      admin.fetchOffsets({ groupId: this.groupId, topics: [...topics] }),
      ...topics.map((topic) => admin.fetchTopicOffsets(topic)),
    ]);
    const failed = settled.find((r) => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    const [committed, ...ends] = settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as [
      Awaited<ReturnType<Admin['fetchOffsets']>>,
      ...Awaited<ReturnType<Admin['fetchTopicOffsets']>>[],
    ];
    let lag = 0;
    topics.forEach((topic, i) => {
      const done = new Map(
        (committed.find((c) => c.topic === topic)?.partitions ?? []).map((p) => [
          p.partition,
          Number(p.offset),
        ]),
      );
      for (const end of ends[i] ?? []) {
        const at = done.get(end.partition) ?? -1;
        lag += Math.max(0, Number(end.high) - (at < 0 ? Number(end.low) : at));
      }
    });
    return lag;
  }

  async close(): Promise<void> {
    const admin = this.admin ?? (await this.connecting?.catch(() => undefined));
    this.admin = undefined;
    await admin?.disconnect().catch(() => undefined);
  }

  private connected(): Promise<Admin> {
    if (this.admin !== undefined) return Promise.resolve(this.admin);
    this.connecting ??= (async () => {
      const admin = this.kafka.admin({ retry: { retries: 0 } });
      try {
        await admin.connect();
      } catch (err) {
        void admin.disconnect().catch(() => undefined);
        throw err;
      }
      this.admin = admin;
      return admin;
    })().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }
}

import { readFileSync } from 'node:fs';
import { storageAsset } from './assets.js';
import type { Redis } from './redis.js';
import { AppError } from '../errors.js';

interface CountScript {
  countHits(...args: (string | number)[]): Promise<number[]>;
}

/** What a key's window holds after a call: its count and the time left, ms. */
export interface WindowCount {
  readonly count: number;
  readonly msLeft: number;
}

/** Fixed-window hit counters in Redis: any number of keys counted in one round trip (count-hits.lua). */
export class RedisWindowCounters {
  private readonly script: CountScript;

  constructor(private readonly redis: Redis) {
    if (!('countHits' in redis))
      redis.defineCommand('countHits', { lua: readFileSync(storageAsset('lua/count-hits.lua'), 'utf8') });
    this.script = redis as unknown as CountScript;
  }

  /** Adds `hits[i]` to `keys[i]`; fails at once while Redis is not connected (no offline queue). */
  async add(keys: readonly string[], hits: readonly number[], windowMs: number): Promise<WindowCount[]> {
    if (this.redis.status !== 'ready')
      throw new AppError('DEPENDENCY_UNAVAILABLE', `redis is ${this.redis.status}`);
    const reply = await this.script.countHits(keys.length, ...keys, windowMs, ...hits);
    return keys.map((_, i) => ({
      count: Number(reply[2 * i]),
      msLeft: Math.max(0, Number(reply[2 * i + 1])),
    }));
  }
}

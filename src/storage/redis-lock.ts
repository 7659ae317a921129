import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { sleep } from '../timeouts.js';
import { storageAsset } from './assets.js';
import type { Redis } from './redis.js';

/** First wait after a failed attempt, ms: doubled (jittered) up to `maxDelayMs`. */
const FIRST_RETRY_DELAY_MS = 2;

export interface LockRetry {
  /** First wait after a failed attempt, ms. Default 2. */
  initialDelayMs?: number;
  /** Longest wait between attempts, ms (config.baseline.lockRetryMaxMs). */
  maxDelayMs: number;
}

/** The lock the specification's baseline takes per request: `SET key token NX PX ttl`, released by token. */
export class RedisLock {
  constructor(
    private readonly redis: Redis,
    private readonly retry: LockRetry,
  ) {
    if (!('releaseLock' in redis)) {
      redis.defineCommand('releaseLock', {
        numberOfKeys: 1,
        lua: readFileSync(storageAsset('lua/release-lock.lua'), 'utf8'),
      });
    }
  }

  /**
   * Tries until `deadline` (epoch ms) with jittered exponential backoff; resolves with the token, or
   * undefined if the deadline passed first.
   */
  async acquire(key: string, ttlMs: number, deadline: number): Promise<string | undefined> {
    const token = randomUUID();
    let delay = this.retry.initialDelayMs ?? FIRST_RETRY_DELAY_MS;
    for (;;) {
      const got = await this.redis.set(key, token, 'PX', ttlMs, 'NX');
      if (got === 'OK') return token;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await sleep(Math.min(left, delay / 2 + Math.random() * delay));
      delay = Math.min(delay * 2, this.retry.maxDelayMs);
    }
  }

  async release(key: string, token: string): Promise<boolean> {
    const released = await (
      this.redis as unknown as { releaseLock(k: string, t: string): Promise<number> }
    ).releaseLock(key, token);
    return released === 1;
  }
}

import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import { FailureBackoff, withTimeout } from '../timeouts.js';
import { RedisWindowCounters } from '../storage/rate-counters.js';
import type { Redis } from '../storage/redis.js';

/** Which limit refused a request. */
export type LimitName = 'ip' | 'user';

export interface RateLimitsOptions {
  limits: Config['rateLimit'];
  redis: Redis;
  /** Prefix of the limiter's Redis keys (the service's key prefix). */
  keyPrefix: string;
  onLimited?: (limit: LimitName) => void;
  /** The user limit was decided by the in-memory insurance limiter (Redis failed). */
  onInsurance?: () => void;
}

const WINDOW_SECONDS = 1;
const WINDOW_MS = WINDOW_SECONDS * 1000;

/** What is left of a limit in the current window. */
interface WindowState {
  readonly remainingPoints: number;
  readonly msBeforeNext: number;
}

/**
 * Per-node counts in fixed windows aligned to the clock: synchronous (a WebSocket upgrade cannot await),
 * no timer per key and no promise per read. The map is cleared when a window ends, so it holds at most
 * the keys seen in one window.
 */
export class WindowCounter {
  private counts = new Map<string, number>();
  private window = 0;

  constructor(private readonly points: number) {}

  /** Counts one hit of `key`; returns the window's state, `remainingPoints < 0` once over the limit. */
  hit(key: string, now = Date.now()): WindowState {
    const window = Math.floor(now / WINDOW_MS);
    if (window !== this.window) {
      this.window = window;
      this.counts = new Map();
    }
    const count = (this.counts.get(key) ?? 0) + 1;
    this.counts.set(key, count);
    return { remainingPoints: this.points - count, msBeforeNext: (window + 1) * WINDOW_MS - now };
  }
}

/** IETF draft-ietf-httpapi-ratelimit-headers: the policy and what is left of it in this window. */
function limitHeaders(policy: string, quota: number, res: WindowState): Record<string, string> {
  const resetSeconds = Math.max(1, Math.ceil(res.msBeforeNext / 1000));
  return {
    'RateLimit-Policy': `"${policy}";q=${quota};w=${WINDOW_SECONDS}`,
    RateLimit: `"${policy}";r=${Math.max(0, res.remainingPoints)};t=${resetSeconds}`,
  };
}

function limited(policy: LimitName, quota: number, res: WindowState, what: string): AppError {
  const headers = limitHeaders(policy, quota, res);
  const retryAfterSeconds = Math.max(1, Math.ceil(res.msBeforeNext / 1000));
  return new AppError(
    'RATE_LIMITED',
    `${what}: at most ${quota} per second; retry in ${retryAfterSeconds} s`,
    {
      retryAfterSeconds,
      headers,
    },
  );
}

/** Longest wait for Redis's count of a batch before the insurance limiter decides it, ms. */
const REDIS_ANSWER_TIMEOUT_MS = 250;

/** After Redis failed or was late, batches skip it this long and go to the insurance limiter, ms. */
const REDIS_BACKOFF_MS = 1_000;

interface Waiter {
  resolve(headers: Readonly<Record<string, string>>): void;
  reject(err: AppError): void;
}

/**
 * Fixed one-second windows.
 * - Per client IP, on every request and WebSocket upgrade, in this node's memory: no Redis call on a read.
 *   Behind a balancer that spreads an IP over N nodes, the IP gets N times it.
 * - Per user, on purchases, in Redis, so every node counts against one budget. The purchases that arrive
 *   in one event-loop turn are counted in ONE script call (count-hits.lua), whatever their number: the cost
 *   is per turn, not per purchase. While Redis fails or does not answer within 250 ms, an in-memory
 *   insurance limiter allows each node its share (limit / RATE_LIMIT_NODES), and for a second after such a
 *   failure the batches go to it without asking Redis. So an outage neither opens the gate nor closes it.
 */
export class RateLimits {
  private readonly ip: WindowCounter | undefined;
  private readonly insurance: WindowCounter | undefined;
  private readonly counters: RedisWindowCounters | undefined;
  private pending = new Map<string, Waiter[]>();
  /** Redis failed or was late lately: batches skip it for a second (then one asks it again). */
  private readonly redisBackoff = new FailureBackoff(REDIS_BACKOFF_MS);
  private flushScheduled = false;

  constructor(private readonly options: RateLimitsOptions) {
    const { limits } = options;
    if (limits.ipRequestsPerSecond > 0) this.ip = new WindowCounter(limits.ipRequestsPerSecond);
    if (limits.userPurchasesPerSecond > 0) {
      this.insurance = new WindowCounter(
        Math.max(1, Math.ceil(limits.userPurchasesPerSecond / limits.nodes)),
      );
      this.counters = new RedisWindowCounters(options.redis);
    }
  }

  /** Counts one request of `ip` on this node; throws 429 RATE_LIMITED past the limit. */
  admitIp(ip: string): void {
    if (this.ip === undefined) return;
    const state = this.ip.hit(ip);
    if (state.remainingPoints >= 0) return;
    this.options.onLimited?.('ip');
    throw limited('ip', this.options.limits.ipRequestsPerSecond, state, `requests from ${ip}`);
  }

  /** Counts one purchase of `userId` across all nodes; resolves with the rate-limit headers of the answer. */
  admitPurchase(userId: string): Promise<Readonly<Record<string, string>>> {
    if (this.counters === undefined) return Promise.resolve({});
    return new Promise((resolve, reject) => {
      const waiters = this.pending.get(userId);
      if (waiters === undefined) this.pending.set(userId, [{ resolve, reject }]);
      else waiters.push({ resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    const batch = this.pending;
    this.pending = new Map();
    this.flushScheduled = false;
    const users = [...batch.keys()];
    const prefix = `${this.options.keyPrefix}rl:user:`;
    // While Redis fails or is late, the insurance limiter decides at once (one batch a second asks Redis).
    const counts = await this.redisBackoff.attempt(() =>
      withTimeout(
        this.counters!.add(
          users.map((user) => prefix + user),
          users.map((user) => batch.get(user)!.length),
          WINDOW_MS,
        ),
        REDIS_ANSWER_TIMEOUT_MS,
        'rate-limit count',
      ),
    );
    const quota = this.options.limits.userPurchasesPerSecond;
    users.forEach((user, i) => {
      const waiters = batch.get(user)!;
      const counted = counts?.[i];
      waiters.forEach((waiter, j) => {
        let state: WindowState;
        if (counted === undefined) {
          this.options.onInsurance?.();
          state = this.insurance!.hit(user);
        } else {
          // The batch's hits of this user took the counts up to `count`, in order.
          const count = counted.count - waiters.length + 1 + j;
          state = { remainingPoints: quota - count, msBeforeNext: counted.msLeft };
        }
        if (state.remainingPoints >= 0) waiter.resolve(limitHeaders('user', quota, state));
        else {
          this.options.onLimited?.('user');
          waiter.reject(limited('user', quota, state, `purchases of user ${user}`));
        }
      });
    });
  }
}

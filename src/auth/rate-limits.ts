import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
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

/** What is left of a limit in the current window (the shape rate-limiter-flexible answers with). */
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

/** The in-memory limiter rate-limiter-flexible falls back on while Redis fails; counts its uses. */
class InsuranceLimiter extends RateLimiterMemory {
  constructor(
    points: number,
    private readonly onUse: (() => void) | undefined,
  ) {
    super({ points, duration: WINDOW_SECONDS });
  }

  override consume(...args: Parameters<RateLimiterMemory['consume']>): Promise<RateLimiterRes> {
    this.onUse?.();
    return super.consume(...args);
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

/**
 * Fixed one-second windows. Per client IP, on every request and WebSocket upgrade, in this node's memory
 * (no Redis call on a read; behind a balancer that spreads an IP over N nodes, the IP gets N times it). Per user, on purchases, in Redis so every node counts against one budget:
 * one EVALSHA per purchase. While Redis fails, an in-memory insurance limiter allows each node its share
 * (limit / RATE_LIMIT_NODES), so a Redis outage neither opens the gate nor closes it.
 */
export class RateLimits {
  private readonly ip: WindowCounter | undefined;
  private readonly user: RateLimiterRedis | undefined;

  constructor(private readonly options: RateLimitsOptions) {
    const { limits } = options;
    if (limits.ipRequestsPerSecond > 0) this.ip = new WindowCounter(limits.ipRequestsPerSecond);
    if (limits.userPurchasesPerSecond > 0) {
      const share = Math.max(1, Math.ceil(limits.userPurchasesPerSecond / limits.nodes));
      const insurance = new InsuranceLimiter(share, options.onInsurance);
      this.user = new RateLimiterRedis({
        storeClient: options.redis,
        keyPrefix: `${options.keyPrefix}rl:user`,
        points: limits.userPurchasesPerSecond,
        duration: WINDOW_SECONDS,
        rejectIfRedisNotReady: true,
        insuranceLimiter: insurance,
      });
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

  /** Counts one purchase of `userId` across all nodes; returns the rate-limit headers for the answer. */
  async admitPurchase(userId: string): Promise<Readonly<Record<string, string>>> {
    if (this.user === undefined) return {};
    const quota = this.options.limits.userPurchasesPerSecond;
    try {
      return limitHeaders('user', quota, await this.user.consume(userId));
    } catch (res) {
      if (!(res instanceof RateLimiterRes)) throw res;
      this.options.onLimited?.('user');
      throw limited('user', quota, res, `purchases of user ${userId}`);
    }
  }
}

import { defaults } from './server.js';
import { AppError } from '../domain/errors.js';

/** The provider's settings, read from its own environment (it is a separate program from the service). */
export interface ProviderSettings {
  /** Interface to bind. Default 127.0.0.1. */
  readonly host: string;
  /** Port to bind. Default 18090 (the local stack's); 0 picks a free one. */
  readonly port: number;
  readonly latencyMs: number;
  readonly declineRate: number;
  readonly errorRate: number;
  readonly timeoutRate: number;
  readonly timeoutHoldMs: number;
  /** Seed of a repeatable random stream; undefined: Math.random. */
  readonly seed: number | undefined;
}

export const PROVIDER_ENV_NAMES = [
  'PAYMENT_HOST',
  'PAYMENT_PORT',
  'PAYMENT_LATENCY_MS',
  'PAYMENT_DECLINE_RATE',
  'PAYMENT_ERROR_RATE',
  'PAYMENT_TIMEOUT_RATE',
  'PAYMENT_TIMEOUT_HOLD_MS',
  'PAYMENT_SEED',
] as const;

type ProviderEnvName = (typeof PROVIDER_ENV_NAMES)[number];

/** Every bad setting at once: the provider does not start (STARTUP_FAILED). */
export class ProviderSettingsError extends AppError {
  constructor(readonly problems: readonly string[]) {
    super(
      'STARTUP_FAILED',
      `invalid settings (${problems.length} problem(s)):\n  - ${problems.join('\n  - ')}`,
    );
    this.name = 'ProviderSettingsError';
  }
}

/** Validates every setting, then throws one error naming each bad one. */
export function readProviderSettings(env: Partial<Record<string, string>>): ProviderSettings {
  const problems: string[] = [];
  const raw = (name: ProviderEnvName): string | undefined => {
    const value = env[name]?.trim();
    return value === undefined || value === '' ? undefined : value;
  };
  const int = (name: ProviderEnvName, fallback: number, max: number): number => {
    const value = raw(name);
    if (value === undefined) return fallback;
    const n = Number(value);
    if (/^\d+$/.test(value) && n <= max) return n;
    problems.push(`${name}=${JSON.stringify(value)}: expected an integer from 0 to ${max}`);
    return fallback;
  };
  const rate = (name: ProviderEnvName, fallback: number): number => {
    const value = raw(name);
    if (value === undefined) return fallback;
    const n = Number(value);
    if (/^(\d+\.?\d*|\.\d+)$/.test(value) && n >= 0 && n <= 1) return n;
    problems.push(`${name}=${JSON.stringify(value)}: expected a probability from 0 to 1, e.g. 0.05`);
    return fallback;
  };
  const seedText = raw('PAYMENT_SEED');
  const settings: ProviderSettings = {
    host: raw('PAYMENT_HOST') ?? '127.0.0.1',
    port: int('PAYMENT_PORT', 18_090, 65_535), // the local stack's port, PAYMENT_URL's default
    latencyMs: int('PAYMENT_LATENCY_MS', defaults.latencyMs, 600_000),
    declineRate: rate('PAYMENT_DECLINE_RATE', defaults.declineRate),
    errorRate: rate('PAYMENT_ERROR_RATE', defaults.errorRate),
    timeoutRate: rate('PAYMENT_TIMEOUT_RATE', defaults.timeoutRate),
    timeoutHoldMs: int('PAYMENT_TIMEOUT_HOLD_MS', defaults.timeoutHoldMs, 3_600_000),
    seed: seedText === undefined ? undefined : int('PAYMENT_SEED', 0, 4_294_967_295),
  };
  if (problems.length > 0) throw new ProviderSettingsError(problems);
  return settings;
}

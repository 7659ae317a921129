import { EnvReader, Setting, type Env } from './config/setting.js';
import { RENAMED_ENV, settings } from './config/settings.js';
import { AppError } from './domain/errors.js';

/**
 * The only reader of process.env. `loadConfig` reads every setting of the table (`src/config/settings.ts`),
 * reports all problems in one error, and returns a frozen, typed Config. Defaults point at the local stack
 * (`npm run stack -- up`).
 */

export { JWT_ALGORITHMS, type LogLevel } from './config/settings.js';
export type { MysqlAddress, MysqlEndpoint, MysqlTls } from './config/stores.js';
export type { Env } from './config/setting.js';

/** A group of the table: settings and groups by name. */
interface Group {
  readonly [key: string]: Setting<unknown> | Group;
}

/** The value a table (or a group of it) gives: each setting's parsed type, at the same path. */
export type ConfigOf<T> = {
  readonly [K in keyof T]: T[K] extends Setting<infer V> ? V : ConfigOf<T[K]>;
};

/** The service's configuration, as the table declares it. */
export type Config = ConfigOf<typeof settings>;

/** Every setting of the table in its order, composites followed by the settings only they read. */
export function settingList(group: Group = settings): Setting<unknown>[] {
  const out: Setting<unknown>[] = [];
  const add = (setting: Setting<unknown>): void => {
    if (out.includes(setting)) return;
    out.push(setting);
    setting.parts.forEach(add);
  };
  const walk = (node: Group): void => {
    for (const value of Object.values(node)) {
      if (value instanceof Setting) add(value);
      else walk(value);
    }
  };
  walk(group);
  return out;
}

/** Every environment variable the service reads (docker-compose.yml is checked against this list). */
export const CONFIG_ENV_NAMES: readonly string[] = [...new Set(settingList().map((s) => s.env))];

/** Every bad setting at once: the service does not start (STARTUP_FAILED). */
export class ConfigError extends AppError {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(
      'STARTUP_FAILED',
      `invalid configuration (${problems.length} problem(s)):\n  - ${problems.join('\n  - ')}`,
    );
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Some defaults, for tests and tools that mint tokens the service accepts. */
export const defaults = (() => {
  const { auth } = loadConfig({});
  return { authIssuer: auth.issuer, authAudience: auth.audience };
})();

/** The group's values as plain frozen objects, read in table order. */
function settle(group: Group, read: EnvReader): object {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(group))
    out[key] = value instanceof Setting ? read.value(value) : settle(value, read);
  return deepFreeze(out);
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

/** Builds the Config from an environment; throws one ConfigError naming every bad setting. */
export function loadConfig(env: Env = process.env): Config {
  const read = new EnvReader(env);
  const config = settle(settings, read) as Config;
  // Settings only a composite reads, whatever that composite made of them: each is checked.
  for (const setting of settingList()) read.value(setting);
  for (const [old, now] of Object.entries(RENAMED_ENV)) {
    if (Object.hasOwn(env, old)) read.problems.push(`${old} is no longer read: it was renamed ${now}`);
  }
  if (read.problems.length > 0) throw new ConfigError(read.problems);
  return config;
}

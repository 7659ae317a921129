import { isAddressOrRange } from '../auth/client-ip.js';
import { InvariantError } from '../domain/errors.js';

/** The environment a configuration is read from (process.env, or a test's object). */
export type Env = Partial<Record<string, string>>;

/** A setting's value or its default; a default may follow other settings (`read.value(other)`). */
type Default<T> = T | ((read: EnvReader) => T);

/**
 * One setting: the environment variable it comes from, how that is parsed and checked, its default (with
 * its unit) and its meaning. The table (`src/config/settings.ts`) is made of these; `loadConfig`, the
 * `Config` type, `CONFIG_ENV_NAMES` and the README's settings table all come from it.
 */
export class Setting<T> {
  constructor(
    /** The environment variable. */
    readonly env: string,
    /** README: the default as shown, with its unit. */
    readonly shown: string,
    /** README: the values accepted (kind, bounds, unit). */
    readonly allowed: string,
    /** README: what it does. */
    readonly doc: string,
    /** The value: a bad one is reported to `read` (and the default used meanwhile). */
    readonly parse: (read: EnvReader) => T,
    /** Settings this one combines and that appear nowhere else in the table (composites). */
    readonly parts: readonly Setting<unknown>[] = [],
  ) {}

  /**
   * This setting's value turned into another (a composite: with `parts`, other settings only it reads), or
   * checked against other settings; documented as this one.
   */
  map<U>(fn: (value: T, read: EnvReader) => U, parts: readonly Setting<unknown>[] = []): Setting<U> {
    return new Setting(this.env, this.shown, this.allowed, this.doc, (read) => fn(this.parse(read), read), [
      ...this.parts,
      ...parts,
    ]);
  }
}

/** Reads env values, each setting once, recording every problem instead of stopping at the first. */
export class EnvReader {
  readonly problems: string[] = [];
  private readonly values = new Map<Setting<unknown>, { value: unknown } | 'reading'>();
  constructor(private readonly env: Env) {}

  /** The variable's trimmed value; undefined when unset or blank. */
  raw(name: string): string | undefined {
    const value = this.env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  }

  /** Whether the variable is present at all (set but blank included). */
  present(name: string): boolean {
    return this.env[name] !== undefined;
  }

  /** Records `NAME="value": expected …`. */
  expected(name: string, value: string | undefined, what: string): void {
    this.problems.push(`${name}=${JSON.stringify(value)}: expected ${what}`);
  }

  /** Whether a problem with this variable was recorded. */
  reported(name: string): boolean {
    return this.problems.some((p) => p.startsWith(name));
  }

  /** The setting's value, parsed once however many settings read it. */
  value<T>(setting: Setting<T>): T {
    const known = this.values.get(setting);
    if (known === 'reading') throw new InvariantError(`config: ${setting.env} depends on itself`);
    if (known !== undefined) return known.value as T;
    this.values.set(setting, 'reading');
    const value = setting.parse(this);
    this.values.set(setting, { value });
    return value;
  }
}

function resolve<T>(fallback: Default<T>, read: EnvReader): T {
  return typeof fallback === 'function' ? (fallback as (read: EnvReader) => T)(read) : fallback;
}

const code = (value: unknown): string => `\`${String(value)}\``;

interface Described<T> {
  readonly default: Default<T>;
  readonly doc: string;
  /** README's default column when the default is computed (or needs a word); else the value itself. */
  readonly shown?: string;
}

/** A string taken as it is (trimmed); blank is unset. */
export function text(env: string, options: Described<string>): Setting<string> {
  const shown = options.shown ?? code(options.default);
  return new Setting(env, shown, 'text', options.doc, (read) => {
    return read.raw(env) ?? resolve(options.default, read);
  });
}

/** An integer within bounds, in `unit` (ms, s, bytes, …; none for a count). */
export function int(
  env: string,
  options: Described<number> & { readonly min: number; readonly max: number; readonly unit?: string },
): Setting<number> {
  const { min, max, unit } = options;
  const per = unit === undefined ? '' : ` ${unit}`;
  const shown = options.shown ?? `${code(options.default)}${per}`;
  return new Setting(env, shown, `${min}–${max}${per}`, options.doc, (read) => {
    const value = read.raw(env);
    const fallback = () => resolve(options.default, read);
    if (value === undefined) return fallback();
    const n = Number(value);
    if (!/^-?\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
      read.expected(env, value, `an integer from ${min} to ${max}${unit === undefined ? '' : ` (${unit})`}`);
      return fallback();
    }
    return n;
  });
}

/** One of a few words. */
export function oneOf<const V extends string>(
  env: string,
  allowed: readonly V[],
  options: Described<NoInfer<V>>,
): Setting<V> {
  const shown = options.shown ?? code(options.default);
  return new Setting(env, shown, allowed.map(code).join(', '), options.doc, (read) => {
    const value = read.raw(env);
    if (value === undefined) return resolve(options.default, read);
    if (!(allowed as readonly string[]).includes(value)) {
      read.expected(env, value, `one of ${allowed.join(', ')}`);
      return resolve(options.default, read);
    }
    return value as V;
  });
}

/** A comma-separated list, each item one of `allowed`, at least one. */
export function listOf(
  env: string,
  allowed: readonly string[],
  options: Described<string>,
): Setting<string[]> {
  const shown = options.shown ?? code(options.default);
  const allowedText = `comma-separated, from ${allowed.map(code).join(', ')}`;
  return new Setting(env, shown, allowedText, options.doc, (read) => {
    const fallback = resolve(options.default, read);
    const items = splitList(read.raw(env) ?? fallback);
    if (items.some((item) => !allowed.includes(item)) || items.length === 0) {
      read.expected(env, read.raw(env), `a list of ${allowed.join(', ')}`);
      return fallback.split(',');
    }
    return items;
  });
}

/** A comma-separated list of IP addresses and CIDR ranges; set but blank is an empty list. */
export function addresses(env: string, options: Described<string>): Setting<string[]> {
  const shown = options.shown ?? code(options.default);
  const allowed = 'IP addresses and CIDR ranges, comma-separated (blank: none)';
  return new Setting(env, shown, allowed, options.doc, (read) => {
    const items = splitList(read.raw(env) ?? (read.present(env) ? '' : resolve(options.default, read)));
    const bad = items.filter((item) => !isAddressOrRange(item));
    if (bad.length > 0) {
      read.problems.push(
        `${env}: ${bad.map((b) => JSON.stringify(b)).join(', ')}: expected IP addresses or CIDR ranges (10.0.0.0/8)`,
      );
      return [];
    }
    return items;
  });
}

/** A comma-separated list of `host:port`; blank is none. */
export function hostPorts(
  env: string,
  options: Described<string>,
): Setting<{ host: string; port: number }[]> {
  const shown = options.shown ?? code(options.default);
  return new Setting(env, shown, '`host:port`, comma-separated', options.doc, (read) => {
    const value = read.raw(env) ?? resolve(options.default, read);
    if (value === '') return [];
    const out: { host: string; port: number }[] = [];
    for (const item of value.split(',').map((s) => s.trim())) {
      const address = parseHostPort(item);
      if (address === undefined)
        read.problems.push(
          `${env}: ${JSON.stringify(item)} is not host:port (comma-separated list expected)`,
        );
      else out.push(address);
    }
    return out;
  });
}

/** `host:port=host:port,…` (what a server reports = where this node reaches it); none when unset. */
export function addressMap(
  env: string,
  options: { readonly doc: string },
): Setting<Record<string, { host: string; port: number }>> {
  const allowed = '`host:port=host:port`, comma-separated';
  return new Setting(env, 'none', allowed, options.doc, (read) => {
    const out: Record<string, { host: string; port: number }> = {};
    for (const item of splitList(read.raw(env) ?? '')) {
      const [from = '', to = '', extra] = item.split('=');
      const reported = parseHostPort(from);
      const reached = parseHostPort(to);
      if (reported === undefined || reached === undefined || extra !== undefined) {
        read.problems.push(
          `${env}: ${JSON.stringify(item)} is not host:port=host:port (comma-separated list expected)`,
        );
        continue;
      }
      out[`${reported.host}:${reported.port}`] = reached;
    }
    return out;
  });
}

/** A URL of one of `protocols` with a host; `form` shows its shape in the README and in problems. */
export function url(
  env: string,
  protocols: readonly string[],
  form: string,
  options: Described<string>,
): Setting<string> {
  const shown = options.shown ?? code(options.default);
  return new Setting(env, shown, code(form), options.doc, (read) => {
    const fallback = resolve(options.default, read);
    const value = read.raw(env);
    if (value === undefined) return fallback;
    const parsed = parseUrl(value);
    if (parsed === undefined || !protocols.includes(parsed.protocol) || parsed.hostname === '') {
      read.expected(env, value, form);
      return fallback;
    }
    return value;
  });
}

function splitList(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** `host:port` (a name, an IPv4 address or a bracketed IPv6 one; port 1-65535), else undefined. */
function parseHostPort(item: string): { host: string; port: number } | undefined {
  const match = /^([A-Za-z0-9.\-_]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$/.exec(item);
  const port = match ? Number(match[2]) : 0;
  return match && port >= 1 && port <= 65535 ? { host: match[1]!, port } : undefined;
}

export function parseUrl(value: string): URL | undefined {
  try {
    return new URL(value);
  } catch {
    return undefined;
  }
}

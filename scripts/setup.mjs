#!/usr/bin/env node
// Brings a machine to a runnable state before `npm test`, `npm start`, `npm run stack` and `npm run bench`:
// npm dependencies, the TypeBox bundle, server packages, Kafka jars, the local stack, the build. Node builtins
// only: it runs before `npm install`. Each step is skipped when already done; one line is printed per step
// performed.
//   node scripts/setup.mjs [--no-stack] [--build]
/* global process, console -- a plain Node script, linted without type information */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = new Set(process.argv.slice(2));
const unknown = [...args].filter((arg) => arg !== '--no-stack' && arg !== '--build');
if (unknown.length > 0)
  fail(`unknown option ${unknown.join(' ')} (usage: node scripts/setup.mjs [--no-stack] [--build])`);

/** Debian packages the stack needs, each with the file that shows it is installed. */
const SYSTEM_PACKAGES = [
  { pkg: 'mariadb-server', file: '/usr/sbin/mariadbd' },
  { pkg: 'redis-server', file: '/usr/bin/redis-server' },
  { pkg: 'nginx', file: '/usr/sbin/nginx' },
  { pkg: 'openjdk-17-jre-headless', file: '/usr/bin/java' },
  { pkg: 'maven', file: '/usr/bin/mvn' },
  // The stack's local CA and server certificates (scripts/stack/tls.ts).
  { pkg: 'openssl', file: '/usr/bin/openssl' },
  // The `reads` benchmark's HTTP client (bench/scenarios/reads.ts).
  { pkg: 'wrk', file: '/usr/bin/wrk' },
  // Monitoring (scripts/stack/monitoring.ts): scraper and alert rules (promtool), alert routing, and the
  // exporters of Redis, MariaDB and (by TCP probe) Kafka. Their system services never start: see below.
  { pkg: 'prometheus', file: '/usr/bin/prometheus' },
  { pkg: 'prometheus-alertmanager', file: '/usr/bin/prometheus-alertmanager' },
  { pkg: 'prometheus-redis-exporter', file: '/usr/bin/prometheus-redis-exporter' },
  { pkg: 'prometheus-mysqld-exporter', file: '/usr/bin/prometheus-mysqld-exporter' },
  { pkg: 'prometheus-blackbox-exporter', file: '/usr/bin/prometheus-blackbox-exporter' },
  // Headless browser of the dashboard test and its screenshot (test/observability/dashboard.test.ts).
  { pkg: 'chromium', file: '/usr/bin/chromium' },
];

function fail(message) {
  console.error(`setup: ${message}`);
  process.exit(1);
}

/** Runs a command; its output is shown only when it fails (`quiet`) or always. Fails setup with `what`. */
function run(what, file, argv, { quiet = false, env = process.env } = {}) {
  const result = attempt(file, argv, { quiet, env });
  if (result.error) fail(`${what}: cannot run ${file}: ${result.error.message}`);
  if (result.status !== 0) {
    if (quiet)
      process.stderr.write(
        `${result.stdout}${result.stderr}`.trim().split('\n').slice(-40).join('\n') + '\n',
      );
    fail(`${what} failed (${file} ${argv.join(' ')} exited with ${result.status ?? result.signal})`);
  }
}

function attempt(file, argv, { quiet = false, env = process.env } = {}) {
  return spawnSync(file, argv, {
    cwd: ROOT,
    env,
    stdio: quiet ? 'pipe' : 'inherit',
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
}

function readJson(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

/** True when node_modules matches package-lock.json (npm keeps a copy of what it installed in .package-lock.json). */
function dependenciesCurrent() {
  const lockFile = path.join(ROOT, 'package-lock.json');
  const installedFile = path.join(ROOT, 'node_modules', '.package-lock.json');
  if (!fs.existsSync(installedFile)) return false;
  if (fs.statSync(installedFile).mtimeMs >= fs.statSync(lockFile).mtimeMs) return true;
  // The lock is newer (a pull, a checkout): compare what it pins with what is installed.
  const wanted = readJson(lockFile).packages ?? {};
  const installed = readJson(installedFile).packages ?? {};
  const same = (a, b) => a.version === b.version && a.integrity === b.integrity && a.resolved === b.resolved;
  const current =
    Object.entries(wanted).every(
      ([key, entry]) =>
        key === '' || (installed[key] ? same(entry, installed[key]) : entry.optional === true),
    ) && Object.keys(installed).every((key) => key in wanted);
  if (current) fs.utimesSync(installedFile, new Date(), new Date());
  return current;
}

function ensureDependencies() {
  if (dependenciesCurrent()) return;
  console.log('setup: npm ci (node_modules missing or older than package-lock.json)');
  run('npm ci', 'npm', ['ci', '--no-audit', '--no-fund']);
}

function ensureSystemPackages() {
  const missing = SYSTEM_PACKAGES.filter(({ file }) => !fs.existsSync(file)).map(({ pkg }) => pkg);
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0)
    fail(
      `missing ${missing.join(', ')}: install them (sudo apt-get install ${missing.join(' ')}) or run setup as root`,
    );
  console.log(`setup: apt-get install ${missing.join(' ')}`);
  // The stack runs its own servers: keep the packages' system services from starting while they install.
  const policy = '/usr/sbin/policy-rc.d';
  const ownPolicy = !fs.existsSync(policy);
  if (ownPolicy)
    fs.writeFileSync(
      policy,
      '#!/bin/sh\n# Written by flash-sale scripts/setup.mjs during apt-get install.\nexit 101\n',
      { mode: 0o755 },
    );
  try {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const install = ['install', '-y', '-q', '--no-install-recommends', ...missing];
    if (attempt('apt-get', install, { quiet: true, env }).status !== 0) {
      console.log('setup: apt-get update (install failed, package lists may be stale)');
      run('apt-get update', 'apt-get', ['update', '-q'], { quiet: true, env });
      run(`apt-get install ${missing.join(' ')}`, 'apt-get', install, { quiet: true, env });
    }
  } finally {
    if (ownPolicy) fs.rmSync(policy, { force: true });
  }
  const still = SYSTEM_PACKAGES.filter(({ file }) => !fs.existsSync(file));
  if (still.length > 0)
    fail(`apt-get installed, but ${still.map(({ file }) => file).join(', ')} still missing`);
}

function ensureKafkaJars() {
  const pom = path.join(ROOT, 'docker', 'kafka', 'pom.xml');
  const version = /<kafka\.version>([^<]+)<\/kafka\.version>/.exec(fs.readFileSync(pom, 'utf8'))?.[1];
  if (version === undefined) fail(`${pom} has no <kafka.version> property`);
  const libs = path.join(ROOT, 'docker', 'kafka', 'target', 'libs');
  if (fs.existsSync(path.join(libs, `kafka_2.13-${version}.jar`))) return;
  console.log(`setup: fetching Kafka ${version} jars with Maven into docker/kafka/target/libs`);
  // An older version's jars would mix into the classpath: start from an empty folder.
  fs.rmSync(libs, { recursive: true, force: true });
  run(
    'maven dependency:copy-dependencies',
    'mvn',
    [
      '-q',
      '-B',
      '-f',
      pom,
      'dependency:copy-dependencies',
      `-DoutputDirectory=${libs}`,
      '-DincludeScope=runtime',
    ],
    { quiet: true },
  );
}

function startStack() {
  // Same code path as `npm run stack -- up`; --quiet prints one line instead of the table.
  run('stack up', path.join(ROOT, 'node_modules', '.bin', 'tsx'), [
    path.join('scripts', 'stack', 'cli.ts'),
    'up',
    '--quiet',
  ]);
}

/** TypeBox as one module (`#typebox`), rebundled when the installed version or the exports used change. */
function ensureVendorBundle() {
  run('bundle TypeBox', process.execPath, [path.join('scripts', 'bundle-vendor.mjs')]);
}

function build() {
  console.log('setup: tsc -p tsconfig.build.json');
  run('build', path.join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.build.json']);
}

ensureDependencies();
ensureVendorBundle();
ensureSystemPackages();
ensureKafkaJars();
if (!args.has('--no-stack')) startStack();
if (args.has('--build')) build();

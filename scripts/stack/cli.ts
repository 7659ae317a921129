// `npm run stack -- up|down|status|reset [--quiet]`: the local stack of real servers on loopback.
import { relativeToRepo, type ServerName } from './layout.js';
import { StackError } from './process.js';
import { dbFailoverRequest } from './db-failover.js';
import {
  SERVERS,
  rejoinMariadb,
  stackDown,
  stackReset,
  stackStatus,
  stackUp,
  type StackStatus,
} from './stack.js';

const USAGE =
  'usage: npm run stack -- up|down|status|reset [--quiet]\n' +
  '       npm run stack -- switchover <primary|replica>   (MariaDB: make that server the primary)\n' +
  '       npm run stack -- rejoin <primary|replica>       (MariaDB: rebuild that server as a replica of the primary)';

function table(rows: readonly (readonly string[])[]): string {
  const widths =
    rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length))) ?? [];
  return rows
    .map((row) =>
      row
        .map((cell, column) => cell.padEnd(widths[column] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

function statusTable(status: StackStatus, started: ReadonlySet<ServerName>): string {
  const rows = SERVERS.map(({ name }) => {
    const server = status[name];
    const note = server.state === 'up' ? (started.has(name) ? 'started' : 'already running') : 'down';
    return [
      name,
      server.state,
      String(server.pid ?? '-'),
      server.address,
      relativeToRepo(server.dataDir),
      relativeToRepo(server.logFile),
      note,
    ];
  });
  return table([['server', 'state', 'pid', 'address', 'data', 'log', ''], ...rows]);
}

async function up(quiet: boolean): Promise<void> {
  const startedAt = Date.now();
  const results = await stackUp();
  const started = new Set(SERVERS.map((server) => server.name).filter((name) => results[name].started));
  const seconds = ((Date.now() - startedAt) / 1000).toFixed(1);
  for (const { name } of SERVERS) {
    const why = results[name].restarted;
    if (why !== undefined) console.log(`stack: restarted ${name}: ${why}`);
  }
  if (quiet) {
    const what = started.size === 0 ? 'already running' : `started ${[...started].join(', ')}`;
    console.log(`stack: up (${what}) in ${seconds} s`);
    return;
  }
  console.log(statusTable(await stackStatus(), started));
  console.log(`stack up in ${seconds} s`);
}

async function down(): Promise<void> {
  const stopped = await stackDown();
  const names = SERVERS.map((server) => server.name).filter((name) => stopped[name] !== undefined);
  console.log(
    names.length === 0
      ? 'stack: nothing was running'
      : `stack: stopped ${names.map((name) => `${name} (pid ${stopped[name]})`).join(', ')}`,
  );
}

async function main(argv: readonly string[]): Promise<void> {
  const quiet = argv.includes('--quiet');
  const [command, ...rest] = argv.filter((arg) => arg !== '--quiet');
  if (command === 'switchover' || command === 'rejoin') {
    const [server, ...extra] = rest;
    if ((server !== 'primary' && server !== 'replica') || extra.length > 0)
      throw new StackError(`${command} takes one MariaDB server: primary or replica\n${USAGE}`);
    if (command === 'rejoin') {
      await rejoinMariadb(server);
      console.log(`stack: ${server} rebuilt as a replica of the primary`);
      return;
    }
    const { status, body } = await dbFailoverRequest('POST', `/switchover?to=${server}`);
    if (status !== 200) throw new StackError(`switchover: ${JSON.stringify(body)}`);
    console.log(`stack: ${server} is the MariaDB primary`);
    return;
  }
  if (rest.length > 0) throw new StackError(`unexpected arguments: ${rest.join(' ')}\n${USAGE}`);
  switch (command) {
    case 'up':
      return up(quiet);
    case 'down':
      return down();
    case 'status':
      console.log(JSON.stringify(await stackStatus(), null, 2));
      return;
    case 'reset':
      await stackReset();
      console.log('stack: stopped and wiped .stack/');
      return;
    default:
      throw new StackError(command === undefined ? USAGE : `unknown command '${command}'\n${USAGE}`);
  }
}

main(process.argv.slice(2)).then(
  // kafkajs and sockets may keep handles open; the work is done.
  () => process.exit(0),
  (error: unknown) => {
    console.error(error instanceof StackError ? `stack: ${error.message}` : error);
    process.exit(1);
  },
);

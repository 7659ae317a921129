// The MariaDB failover manager: keeps exactly one server writable (the elected primary), promotes the
// replica when the primary has been unreachable for `failoverAfterMs`, fences a server it replaced, and
// switches over on request. Every server starts read-only (docker/mariadb/*.cnf), so a primary that dies
// and comes back cannot take a write: only this manager opens a server, and never a second one.
import mysql, { type Pool, type RowDataPacket } from 'mysql2/promise';
import type { Logger } from '../logger.js';
import { AppError, InvariantError } from '../errors.js';

export interface DbServer {
  /** The server's name in logs, the API and the state file (`primary`, `replica` locally). */
  readonly name: string;
  readonly host: string;
  readonly port: number;
}

export interface FailoverOptions {
  /** The servers, in order of preference for the first election. */
  readonly servers: readonly DbServer[];
  /** The manager's login on every server (READ_ONLY ADMIN, CONNECTION ADMIN, REPLICATION SLAVE ADMIN, …). */
  readonly user: string;
  readonly password: string;
  /** TLS to the servers: the CA their certificates are verified against; undefined: plaintext. */
  readonly ca?: Buffer;
  /** What a server turned replica logs in to its primary with (switchover), and the CA path it verifies with. */
  readonly replication: { readonly user: string; readonly password: string; readonly caFile?: string };
  /** The primary unreachable this long: promote its replica. */
  readonly failoverAfterMs: number;
  /** Time between checks. */
  readonly checkMs: number;
  /** The elected primary's name, kept across restarts. */
  readonly state: { load(): string | undefined; save(name: string): void };
  readonly logger: Logger;
}

export interface ServerState {
  readonly name: string;
  readonly up: boolean;
  readonly readOnly?: boolean;
  /** `host:port` of the primary it replicates from; null: from nobody. */
  readonly replicaOf?: string | null;
  readonly ioThread?: string;
  readonly sqlThread?: string;
  readonly gtid?: string;
  readonly error?: string;
}

export interface Failover {
  readonly from: string;
  readonly to: string;
  /** Epoch ms when the old primary was first seen down, and when the new one was opened. */
  readonly downAt: number;
  readonly promotedAt: number;
}

/** Users whose connections survive a fence: the server's own threads, replication and administration. */
const KEEP_USERS = ['system user', 'event_scheduler', 'root'];
const QUERY_TIMEOUT_MS = 1_000;
const CATCH_UP_TIMEOUT_MS = 10_000;
/**
 * MASTER_HEARTBEAT_PERIOD, s: how often a primary with nothing to send tells its replica it lives. With
 * `slave_net_timeout` (4 s, docker/mariadb/*.cnf) a replica gives up on a silent primary (frozen,
 * partitioned) within 4 s; the manager promotes only a replica that has.
 */
export const HEARTBEAT_S = 1;

const address = (server: DbServer): string => `${server.host}:${server.port}`;

export class FailoverManager {
  private readonly pools = new Map<string, Pool>();
  private elected: string;
  private downSince: number | undefined;
  private warnedNoCandidate = false;
  private warnedReplicaConnected = false;
  private timer: NodeJS.Timeout | undefined;
  /** Checks and switchovers run one at a time, in order. */
  private lock: Promise<unknown> = Promise.resolve();
  private last: readonly ServerState[] = [];
  readonly failovers: Failover[] = [];

  constructor(private readonly options: FailoverOptions) {
    const saved = options.state.load();
    const first = options.servers[0];
    if (first === undefined) throw new AppError('STARTUP_FAILED', 'db-failover: no servers');
    this.elected = options.servers.some((s) => s.name === saved) ? saved! : first.name;
    for (const server of options.servers)
      this.pools.set(
        server.name,
        mysql.createPool({
          host: server.host,
          port: server.port,
          user: options.user,
          password: options.password,
          connectionLimit: 2,
          connectTimeout: QUERY_TIMEOUT_MS,
          multipleStatements: true,
          ...(options.ca === undefined ? {} : { ssl: { ca: options.ca, rejectUnauthorized: true } }),
        }),
      );
  }

  /** The elected primary's name. */
  get primary(): string {
    return this.elected;
  }

  /** What the last check saw of each server. */
  get servers(): readonly ServerState[] {
    return this.last;
  }

  start(): void {
    const loop = (): void => {
      void this.exclusive(() => this.check())
        .catch((err: unknown) => this.options.logger.warn({ err: (err as Error).message }, 'check failed'))
        .finally(() => {
          if (this.timer !== undefined) this.timer = setTimeout(loop, this.options.checkMs);
        });
    };
    this.timer = setTimeout(loop, 0);
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.lock.catch(() => undefined);
    await Promise.allSettled([...this.pools.values()].map((pool) => pool.end()));
  }

  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.lock.catch(() => undefined).then(work);
    this.lock = run;
    return run;
  }

  private server(name: string): DbServer {
    const server = this.options.servers.find((s) => s.name === name);
    if (server === undefined) throw new InvariantError(`db-failover: unknown server ${name}`);
    return server;
  }

  /**
   * One statement on its own pooled connection. A connection that failed one is destroyed, not reused: a
   * server grants global privileges at login, so a connection made while a rebuilt server's accounts were
   * being set up (`rejoin`) fails `SHOW SLAVE STATUS` for as long as it lives; reused, it made every check
   * see that server down.
   */
  private async query(name: string, sql: string, timeout = QUERY_TIMEOUT_MS): Promise<RowDataPacket[]> {
    const conn = await this.pools.get(name)!.getConnection();
    try {
      const [rows] = await conn.query<RowDataPacket[]>({ sql, timeout });
      conn.release();
      return rows;
    } catch (err) {
      conn.destroy();
      throw err;
    }
  }

  async probe(server: DbServer): Promise<ServerState> {
    try {
      const [variables] = await this.query(
        server.name,
        'SELECT @@global.read_only AS ro, @@global.gtid_binlog_pos AS gtid',
      );
      const [status] = await this.query(server.name, 'SHOW SLAVE STATUS');
      return {
        name: server.name,
        up: true,
        readOnly: Number(variables?.['ro']) === 1,
        replicaOf: status === undefined ? null : `${status['Master_Host']}:${status['Master_Port']}`,
        ...(status === undefined
          ? {}
          : { ioThread: String(status['Slave_IO_Running']), sqlThread: String(status['Slave_SQL_Running']) }),
        gtid: String(variables?.['gtid'] ?? ''),
      };
    } catch (err) {
      return { name: server.name, up: false, error: (err as Error).message };
    }
  }

  /** One round: see every server, keep one writable, fail over when the elected one is gone too long. */
  async check(): Promise<void> {
    const { logger, failoverAfterMs } = this.options;
    const states = await Promise.all(this.options.servers.map((server) => this.probe(server)));
    this.last = states;
    const writable = states.filter((s) => s.up && s.readOnly === false);
    if (writable.length > 0) {
      const keep = writable.find((s) => s.name === this.elected) ?? writable[0]!;
      for (const state of writable)
        if (state !== keep) await this.fence(state.name, `a second writable server beside ${keep.name}`);
      this.record(keep.name);
      this.downSince = undefined;
      this.warnedNoCandidate = false;
      this.warnedReplicaConnected = false;
      return;
    }
    const elected = states.find((s) => s.name === this.elected)!;
    if (elected.up) {
      // Read-only and replicating from nobody: a new stack, or the primary restarted before anyone replaced
      // it. A server that replicates is never opened here: that is a promotion.
      if (elected.replicaOf === null) {
        await this.query(elected.name, 'SET GLOBAL read_only = 0');
        logger.info({ primary: elected.name }, 'opened the elected primary for writes');
      }
      this.downSince = undefined;
      return;
    }
    const now = Date.now();
    if (this.downSince === undefined) {
      this.downSince = now;
      logger.warn({ primary: elected.name, err: elected.error }, 'primary unreachable');
    }
    if (now - this.downSince < failoverAfterMs) return;
    const from = this.server(elected.name);
    const candidate = states.find((s) => s.up && s.name !== elected.name && s.replicaOf === address(from));
    if (candidate === undefined) {
      if (!this.warnedNoCandidate)
        logger.error({ primary: elected.name }, 'primary down and no replica of it to promote');
      this.warnedNoCandidate = true;
      return;
    }
    // The manager's view alone is not enough: the replica must have lost the primary too (its IO thread
    // reconnecting or stopped; a silent primary within slave_net_timeout). A replica still receiving means
    // the primary lives and only the manager's way to it fails (an overloaded manager, a partition); a
    // promotion then would leave a primary the manager cannot fence beside the one it opened.
    if (candidate.ioThread === 'Yes') {
      if (!this.warnedReplicaConnected)
        logger.warn(
          { primary: elected.name, replica: candidate.name, err: elected.error },
          'primary unreachable from the manager, but its replica still receives from it: not promoting',
        );
      this.warnedReplicaConnected = true;
      return;
    }
    await this.promote(candidate.name, elected.name, this.downSince);
  }

  /**
   * Promotes `name` (a replica of the dead primary): applies every transaction it received (semi-sync: every
   * acknowledged one is in its relay log), stops replicating, becomes the elected primary, opens for writes.
   */
  private async promote(name: string, from: string, downAt: number): Promise<void> {
    const { logger } = this.options;
    logger.warn({ from, to: name }, 'promoting the replica');
    await this.query(name, 'STOP SLAVE IO_THREAD');
    await this.untilRelayApplied(name);
    await this.query(name, 'STOP SLAVE; RESET SLAVE ALL');
    this.record(name); // first: a manager restarted now opens it, never the old one
    await this.query(name, 'SET GLOBAL read_only = 0');
    const failover = { from, to: name, downAt, promotedAt: Date.now() };
    this.failovers.push(failover);
    this.downSince = undefined;
    logger.warn({ ...failover, ms: failover.promotedAt - downAt }, 'promoted: the replica is the primary');
  }

  private async untilRelayApplied(name: string): Promise<void> {
    const deadline = Date.now() + CATCH_UP_TIMEOUT_MS;
    for (;;) {
      const [status] = await this.query(name, 'SHOW SLAVE STATUS');
      const state = String(status?.['Slave_SQL_Running_State'] ?? '');
      const applied =
        status === undefined ||
        status['Slave_SQL_Running'] !== 'Yes' ||
        /read all relay log/i.test(state) ||
        (status['Master_Log_File'] === status['Relay_Master_Log_File'] &&
          status['Read_Master_Log_Pos'] === status['Exec_Master_Log_Pos']);
      if (applied) return;
      if (Date.now() > deadline)
        throw new AppError(
          'DEPENDENCY_UNAVAILABLE',
          `${name}: relay log not applied within ${CATCH_UP_TIMEOUT_MS} ms`,
        );
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Read-only, and every app connection killed: nothing more is written there, nothing in flight commits. */
  private async fence(name: string, why: string): Promise<void> {
    await this.query(name, 'SET GLOBAL read_only = 1');
    const users = [...KEEP_USERS, this.options.user, this.options.replication.user];
    const clients = await this.query(
      name,
      `SELECT ID AS id FROM information_schema.PROCESSLIST WHERE USER NOT IN (${users.map((u) => mysql.escape(u)).join(', ')}) AND ID <> CONNECTION_ID()`,
    );
    for (const { id } of clients)
      await this.query(name, `KILL CONNECTION ${Number(id)}`).catch(() => undefined);
    this.options.logger.warn(
      { server: name, why, killed: clients.length },
      'fenced: read-only, clients cut off',
    );
  }

  private record(name: string): void {
    if (name === this.elected) return;
    this.elected = name;
    this.options.state.save(name);
    this.options.logger.info({ primary: name }, 'elected primary recorded');
  }

  /**
   * A planned switch to `to` (a replica of the primary): the primary fenced, `to` caught up to its last
   * transaction, promoted and opened, and the old primary made its replica. Checks pause meanwhile.
   */
  switchover(to: string): Promise<void> {
    return this.exclusive(async () => {
      const from = this.elected;
      if (to === from) return;
      const target = this.server(to);
      const state = await this.probe(target);
      if (state.replicaOf !== address(this.server(from)))
        throw new AppError('DEPENDENCY_UNAVAILABLE', `${to} is not a replica of the primary ${from}`);
      await this.fence(from, `switchover to ${to}`);
      const [position] = await this.query(from, 'SELECT @@global.gtid_binlog_pos AS pos');
      const [waited] = await this.query(
        to,
        `SELECT MASTER_GTID_WAIT(${mysql.escape(String(position?.['pos'] ?? ''))}, ${CATCH_UP_TIMEOUT_MS / 1000}) AS r`,
        CATCH_UP_TIMEOUT_MS + QUERY_TIMEOUT_MS,
      );
      if (Number(waited?.['r']) !== 0) {
        await this.query(from, 'SET GLOBAL read_only = 0');
        throw new AppError(
          'DEPENDENCY_UNAVAILABLE',
          `${to} did not catch up with ${from} within ${CATCH_UP_TIMEOUT_MS} ms; ${from} reopened`,
        );
      }
      await this.query(to, 'STOP SLAVE; RESET SLAVE ALL');
      this.record(to);
      await this.query(to, 'SET GLOBAL read_only = 0');
      const { user, password, caFile } = this.options.replication;
      await this.query(
        from,
        `CHANGE MASTER TO MASTER_HOST=${mysql.escape(target.host)}, MASTER_PORT=${target.port}, ` +
          `MASTER_USER=${mysql.escape(user)}, MASTER_PASSWORD=${mysql.escape(password)}, ` +
          `MASTER_USE_GTID=current_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=${HEARTBEAT_S}` +
          (caFile === undefined
            ? ''
            : `, MASTER_SSL=1, MASTER_SSL_CA=${mysql.escape(caFile)}, MASTER_SSL_VERIFY_SERVER_CERT=1`) +
          '; START SLAVE',
      );
      this.options.logger.warn({ from, to }, 'switched over');
    });
  }
}

/**
 * The load generator's HTTP/1.1 client: one keep-alive socket per connection, one request at a time, the answer
 * read by a small parser (Content-Length, chunked, or to the end of the connection). The bench holds 6,000 of
 * them; undici's `Client` (a timer set, an llhttp WASM instance and listeners each) cost ~200 CPU-µs per request
 * at that scale, a share of the box and of the latency the bench reports.
 */
import { connect, type Socket } from 'node:net';

export interface Answer {
  readonly status: number;
  /** Lower-case names; a repeated header's values joined with ", ". */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** A request that got no whole HTTP answer; `code`: the socket's (ECONNRESET, …), CLOSED or TIMEOUT. */
export class TransportError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const HEAD_END = Buffer.from('\r\n\r\n');

export class Http1Connection {
  private socket: Socket | undefined;
  private pending: { resolve(a: Answer): void; reject(e: TransportError): void } | undefined;
  private data: Buffer = Buffer.alloc(0);
  private head:
    { status: number; headers: Record<string, string>; length: number | 'chunked' | 'close' } | undefined;
  private bodyAt = 0;
  /** performance.now() of the request in flight (the set's timeout sweep reads it). */
  sentAt = 0;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly onOpen: (delta: 1 | -1) => void,
  ) {}

  get busy(): boolean {
    return this.pending !== undefined;
  }

  /** Sends `text` (a whole request) and resolves with its answer. */
  request(text: string): Promise<Answer> {
    return new Promise<Answer>((resolve, reject) => {
      this.pending = { resolve, reject };
      this.sentAt = performance.now();
      (this.socket ?? this.open()).write(text);
    });
  }

  /** Ends the connection; a request in flight fails with `code`. */
  destroy(code = 'CLOSED', message = 'connection closed by the client'): void {
    this.fail(new TransportError(code, message));
    this.detach();
  }

  private open(): Socket {
    const socket = connect({ host: this.host, port: this.port, noDelay: true });
    const mine = () => this.socket === socket;
    let up = false;
    this.socket = socket;
    socket.once('connect', () => ((up = true), this.onOpen(1)));
    socket.on('data', (chunk: Buffer) => mine() && this.read(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (mine()) this.fail(new TransportError(err.code ?? 'ERROR', err.message));
    });
    // The server's end (an idle keep-alive closed, or a body read to the close): the next request opens another.
    const ended = () => {
      if (!mine()) return;
      if (this.head?.length === 'close') this.finish(this.data.length);
      this.fail(new TransportError('CLOSED', 'the server closed the connection before answering'));
      this.detach();
    };
    socket.once('end', ended);
    socket.once('close', () => {
      if (up) this.onOpen(-1);
      ended();
    });
    return socket;
  }

  /** Forgets the socket (destroyed, or ending after its last answer) and any partial answer. */
  private detach(): void {
    this.socket?.destroy();
    this.socket = undefined;
    this.head = undefined;
    this.data = Buffer.alloc(0);
  }

  private fail(err: TransportError): void {
    const pending = this.pending;
    if (pending === undefined) return;
    this.pending = undefined;
    this.detach();
    pending.reject(err);
  }

  private read(chunk: Buffer): void {
    this.data = this.data.length === 0 ? chunk : Buffer.concat([this.data, chunk]);
    if (this.head === undefined) {
      const end = this.data.indexOf(HEAD_END);
      if (end === -1) return;
      this.head = parseHead(this.data.toString('latin1', 0, end));
      this.bodyAt = end + 4;
      if (this.head === undefined) return this.destroy('BAD_RESPONSE', 'an unreadable HTTP answer');
    }
    const { length } = this.head;
    if (typeof length === 'number') {
      if (this.data.length >= this.bodyAt + length) this.finish(this.bodyAt + length);
    } else if (length === 'chunked') {
      const end = chunkedEnd(this.data, this.bodyAt);
      if (end !== undefined) this.finish(end.next, end.body);
    }
  }

  /** The answer ends at byte `end` of the data (its body from `bodyAt`, or `body` when dechunked). */
  private finish(end: number, body?: Buffer): void {
    const { head, pending } = this;
    if (head === undefined || pending === undefined) return;
    const text = (body ?? this.data.subarray(this.bodyAt, end)).toString('utf8');
    this.data = this.data.subarray(end);
    this.head = undefined;
    this.pending = undefined;
    if (head.headers['connection'] === 'close') {
      this.socket?.end();
      this.socket = undefined; // the next request opens another
    }
    pending.resolve({ status: head.status, headers: head.headers, body: text });
  }
}

function parseHead(text: string) {
  const lines = text.split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]!)?.[1];
  if (status === undefined) return undefined;
  const headers: Record<string, string> = {};
  for (let i = 1; i < lines.length; i += 1) {
    const colon = lines[i]!.indexOf(':');
    const name = lines[i]!.slice(0, colon).toLowerCase();
    const value = lines[i]!.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  const code = Number(status);
  const noBody = code === 204 || code === 304 || (code >= 100 && code < 200);
  const declared = headers['content-length'];
  const length = noBody
    ? 0
    : headers['transfer-encoding']?.includes('chunked')
      ? ('chunked' as const)
      : declared !== undefined
        ? Number(declared)
        : ('close' as const);
  return { status: code, headers, length };
}

/** Where a chunked body that starts at `from` ends, and its bytes; undefined until all of it has arrived. */
function chunkedEnd(data: Buffer, from: number): { next: number; body: Buffer } | undefined {
  const parts: Buffer[] = [];
  for (let at = from; ;) {
    const eol = data.indexOf('\r\n', at);
    if (eol === -1) return undefined;
    const size = parseInt(data.toString('latin1', at, eol), 16);
    if (size === 0) {
      const end = data.indexOf(HEAD_END, eol);
      const trailerless = data.length >= eol + 4 && data.readUInt16BE(eol + 2) === 0x0d0a;
      if (trailerless) return { next: eol + 4, body: Buffer.concat(parts) };
      return end === -1 ? undefined : { next: end + 4, body: Buffer.concat(parts) };
    }
    if (data.length < eol + 2 + size + 2) return undefined;
    parts.push(data.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}

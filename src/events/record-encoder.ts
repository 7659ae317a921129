/**
 * msgpack of a plain record, byte for byte what @msgpack/msgpack's `Encoder` (default options) writes for it,
 * for the shape every event has: string keys in their own order; values that are strings, booleans, null or
 * undefined (nil), integers from -2^31 to 2^32 - 1 or other finite numbers (float64), or records of the same;
 * strings well-formed UTF-16 (a lone surrogate is written differently by Node's UTF-8 writer). Faster on that
 * shape: a key's bytes are encoded once and copied after, an ASCII string under 256 characters is copied by a
 * loop (others by Node's native UTF-8 writer), and one scratch buffer is reused. Anything else (arrays,
 * binaries, Dates, bigints, larger integers, 16 keys or more, a record nested too deep) is refused with
 * `undefined`, and the caller encodes it with the generic encoder.
 */

/** String.prototype.isWellFormed (ES2024; Node 20 has it, this project's lib is ES2023). */
type WellFormed = string & { isWellFormed(): boolean };

/** Records nested deeper than this are left to the generic encoder. */
const MAX_DEPTH = 8;

/** Keys whose encoded bytes are kept (the events' keys are a few dozen); past it, keys are encoded each time. */
const MAX_CACHED_KEYS = 512;

export class RecordEncoder {
  private scratch = Buffer.allocUnsafe(4_096);
  private pos = 0;
  private readonly keys = new Map<string, Uint8Array>();

  /** The record's msgpack bytes (a buffer of its own), or undefined when its shape is not one handled here. */
  encode(record: object): Buffer | undefined {
    this.pos = 0;
    if (!this.writeRecord(record, 1)) return undefined;
    const out = Buffer.allocUnsafe(this.pos);
    out.set(this.scratch.subarray(0, this.pos));
    return out;
  }

  private writeRecord(record: object, depth: number): boolean {
    if (depth > MAX_DEPTH || Array.isArray(record) || ArrayBuffer.isView(record)) return false;
    const proto = Object.getPrototypeOf(record) as unknown;
    if (proto !== Object.prototype && proto !== null) return false;
    const keys = Object.keys(record);
    if (keys.length >= 16) return false;
    this.writeByte(0x80 + keys.length); // fixmap
    for (const key of keys) {
      if (!this.writeKey(key)) return false;
      if (!this.writeValue((record as Record<string, unknown>)[key], depth)) return false;
    }
    return true;
  }

  private writeValue(value: unknown, depth: number): boolean {
    switch (typeof value) {
      case 'string':
        return this.writeString(value);
      case 'number':
        return this.writeNumber(value);
      case 'boolean':
        return this.writeByte(value ? 0xc3 : 0xc2);
      case 'undefined':
        return this.writeByte(0xc0); // nil
      case 'object':
        return value === null ? this.writeByte(0xc0) : this.writeRecord(value, depth + 1);
      default:
        return false;
    }
  }

  private writeKey(key: string): boolean {
    const bytes = this.keys.get(key);
    if (bytes === undefined) {
      const at = this.pos;
      if (!this.writeString(key)) return false;
      if (this.keys.size < MAX_CACHED_KEYS)
        this.keys.set(key, Uint8Array.prototype.slice.call(this.scratch, at, this.pos));
      return true;
    }
    this.ensure(bytes.length);
    const b = this.scratch;
    let p = this.pos;
    for (let i = 0; i < bytes.length; i += 1) b[p++] = bytes[i]!;
    this.pos = p;
    return true;
  }

  private writeString(value: string): boolean {
    const n = value.length;
    if (n < 0x100) {
      // ASCII, the events' usual case: one byte per character, written here (a call into Buffer's native
      // writer costs more than the loop for strings this short).
      this.ensure(2 + n);
      const b = this.scratch;
      const header = n < 32 ? 1 : 2;
      let p = this.pos + header;
      let i = 0;
      for (; i < n; i += 1) {
        const c = value.charCodeAt(i);
        if (c >= 0x80) break;
        b[p++] = c;
      }
      if (i === n) {
        this.stringHeader(this.pos, n);
        this.pos = p;
        return true;
      }
    }
    if (!(value as WellFormed).isWellFormed()) return false;
    const length = Buffer.byteLength(value, 'utf8');
    this.ensure(5 + length);
    this.pos = this.stringHeader(this.pos, length);
    this.pos += this.scratch.write(value, this.pos, length, 'utf8');
    return true;
  }

  /** Writes the header of a string of `length` bytes at `at`; returns where its bytes start. */
  private stringHeader(at: number, length: number): number {
    const b = this.scratch;
    if (length < 32) {
      b[at] = 0xa0 + length; // fixstr
      return at + 1;
    }
    if (length < 0x100) {
      b[at] = 0xd9; // str 8
      b[at + 1] = length;
      return at + 2;
    }
    if (length < 0x10000) {
      b[at] = 0xda; // str 16
      return b.writeUInt16BE(length, at + 1);
    }
    b[at] = 0xdb; // str 32
    return b.writeUInt32BE(length, at + 1);
  }

  private writeNumber(value: number): boolean {
    this.ensure(9);
    const b = this.scratch;
    if (!Number.isSafeInteger(value)) {
      if (!Number.isFinite(value)) return false;
      b[this.pos++] = 0xcb; // float 64
      this.pos = b.writeDoubleBE(value, this.pos);
    } else if (value >= 0) {
      if (value < 0x80)
        b[this.pos++] = value; // positive fixint
      else if (value < 0x100) {
        b[this.pos++] = 0xcc; // uint 8
        b[this.pos++] = value;
      } else if (value < 0x10000) {
        b[this.pos++] = 0xcd; // uint 16
        this.pos = b.writeUInt16BE(value, this.pos);
      } else if (value < 0x100000000) {
        b[this.pos++] = 0xce; // uint 32
        this.pos = b.writeUInt32BE(value, this.pos);
      } else return false;
    } else if (value >= -0x20)
      b[this.pos++] = 0xe0 | (value + 0x20); // negative fixint
    else if (value >= -0x80) {
      b[this.pos++] = 0xd0; // int 8
      this.pos = b.writeInt8(value, this.pos);
    } else if (value >= -0x8000) {
      b[this.pos++] = 0xd1; // int 16
      this.pos = b.writeInt16BE(value, this.pos);
    } else if (value >= -0x80000000) {
      b[this.pos++] = 0xd2; // int 32
      this.pos = b.writeInt32BE(value, this.pos);
    } else return false;
    return true;
  }

  private writeByte(byte: number): true {
    this.ensure(1);
    this.scratch[this.pos++] = byte;
    return true;
  }

  private ensure(bytes: number): void {
    if (this.pos + bytes <= this.scratch.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.scratch.length * 2, this.pos + bytes));
    this.scratch.copy(bigger, 0, 0, this.pos);
    this.scratch = bigger;
  }
}

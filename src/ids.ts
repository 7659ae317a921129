import { randomFillSync } from 'node:crypto';

/** Random bytes drawn 4 KiB at a time: one getrandom call per 256 ids instead of one per id. */
const pool = Buffer.alloc(4096);
let poolOffset = pool.length;

function random16(): Buffer {
  if (poolOffset + 16 > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const bytes = Buffer.from(pool.subarray(poolOffset, poolOffset + 16)); // a copy: the pool is refilled
  poolOffset += 16;
  return bytes;
}

let lastMs = 0;
let seq = 0;

/**
 * UUIDv7 (RFC 9562): 48-bit millisecond time, then a 12-bit counter within the millisecond and
 * random bits. Ids made by one process sort by creation, so orders append to the primary key.
 */
export function uuidv7(now: number = Date.now()): string {
  if (now > lastMs) {
    lastMs = now;
    seq = random16().readUInt16BE(0) & 0x3ff; // start low in the 12-bit space so it rarely wraps
  } else {
    seq += 1;
    if (seq > 0xfff) {
      lastMs += 1; // borrow the next millisecond rather than repeat an id
      seq = 0;
    }
  }
  const bytes = random16();
  bytes.writeUIntBE(lastMs, 0, 6);
  bytes[6] = 0x70 | (seq >> 8);
  bytes[7] = seq & 0xff;
  bytes[8] = 0x80 | (bytes[8]! & 0x3f);
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

import { AppError } from '../errors.js';

/** Rejects any field of `body` not in `allowed`, naming the first one. */
export function onlyFields(body: Record<string, unknown>, allowed: readonly string[]): void {
  for (const field of Object.keys(body)) {
    if (!allowed.includes(field)) {
      throw new AppError(
        'VALIDATION_FAILED',
        `unknown field ${JSON.stringify(field)}; allowed: ${allowed.join(', ')}`,
        { field },
      );
    }
  }
}

export function integerField(body: Record<string, unknown>, field: string, min: number, max: number): number {
  const value = body[field];
  if (value === undefined) throw new AppError('VALIDATION_FAILED', `${field} is required`, { field });
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new AppError('VALIDATION_FAILED', `${field} must be an integer, got ${JSON.stringify(value)}`, {
      field,
    });
  }
  if (value < min || value > max) {
    throw new AppError('VALIDATION_FAILED', `${field} must be from ${min} to ${max}, got ${value}`, {
      field,
    });
  }
  return value;
}

export function stringField(body: Record<string, unknown>, field: string, maxLength: number): string {
  const value = body[field];
  if (value === undefined) throw new AppError('VALIDATION_FAILED', `${field} is required`, { field });
  if (typeof value !== 'string' || value.trim().length === 0 || value.length > maxLength) {
    throw new AppError(
      'VALIDATION_FAILED',
      `${field} must be a non-empty string of at most ${maxLength} characters`,
      { field },
    );
  }
  return value;
}

/** Control characters and bidirectional overrides: they can hide or reorder what an operator reads. */
const UNSAFE_TEXT = /[\p{Cc}\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;

/** A display name: non-empty, at most `maxLength` characters, no control or bidi-override characters. */
export function nameField(body: Record<string, unknown>, field: string, maxLength: number): string {
  const value = stringField(body, field, maxLength);
  if (UNSAFE_TEXT.test(value) || value !== value.trim()) {
    throw new AppError(
      'VALIDATION_FAILED',
      `${field} must not contain control characters or bidi overrides, nor start or end with spaces`,
      { field },
    );
  }
  return value;
}

export function optionalEnumField<T extends string>(
  body: Record<string, unknown>,
  field: string,
  allowed: readonly T[],
  fallback: T,
): T {
  const value = body[field];
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new AppError('VALIDATION_FAILED', `${field} must be one of ${allowed.join(', ')}`, { field });
  }
  return value as T;
}

/** A positive integer id from a path segment or list item. */
export function idParam(raw: string, field: string): number {
  const n = Number(raw);
  if (!/^[1-9]\d{0,15}$/.test(raw) || !Number.isSafeInteger(n)) {
    throw new AppError(
      'VALIDATION_FAILED',
      `${field} must be a positive integer, got ${JSON.stringify(raw)}`,
      { field },
    );
  }
  return n;
}

const TOKEN = /^[A-Za-z0-9._:@-]+$/;

/** A required header made of token characters, at most `maxLength` long. */
export function tokenHeader(
  headers: Readonly<Record<string, string>>,
  name: string,
  maxLength: number,
  missingCode: 'IDEMPOTENCY_KEY_REQUIRED' | 'VALIDATION_FAILED' = 'VALIDATION_FAILED',
): string {
  const value = headers[name.toLowerCase()];
  if (value === undefined || value === '')
    throw new AppError(missingCode, `the ${name} header is required`, { field: name });
  if (value.length > maxLength || !TOKEN.test(value)) {
    throw new AppError(
      'VALIDATION_FAILED',
      `the ${name} header must be 1 to ${maxLength} characters of A-Z a-z 0-9 . _ : @ -`,
      { field: name },
    );
  }
  return value;
}

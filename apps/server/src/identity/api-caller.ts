import { createHash, timingSafeEqual } from 'node:crypto';
import type { ApiKey } from '../config.ts';

/** The two key-authenticated APIs: operators' (`/v1/admin/*`) and a customer backend's (`/v1/server/*`). */
export type ApiScope = 'admin' | 'server';

/** The key a request was authenticated with: its id, never its secret. */
export interface ApiCaller {
  scope: ApiScope;
  keyId: string;
}

/**
 * One scope's keys. A presented key is hashed and compared with every configured key's hash in
 * constant time, all of them every time, so neither the answer's timing nor an early exit tells a
 * caller how much of a key it got right, or which key it matched.
 */
export class KeyRing {
  readonly #keys: Array<{ id: string; digest: Buffer }>;

  constructor(keys: readonly ApiKey[]) {
    this.#keys = keys.map((key) => ({ id: key.id, digest: sha256(key.secret) }));
  }

  get empty(): boolean {
    return this.#keys.length === 0;
  }

  /** The id of the key `presented` is, or null. */
  match(presented: string): string | null {
    const digest = sha256(presented);
    let found: string | null = null;
    for (const key of this.#keys) {
      if (timingSafeEqual(key.digest, digest) && found === null) found = key.id;
    }
    return found;
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

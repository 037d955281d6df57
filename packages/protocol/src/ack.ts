import type { WireError } from './errors.ts';

/** Every ack and every REST response body: success with data, or one catalogued error. */
export type Ok<T> = { ok: true } & T;
export type Fail = { ok: false; error: WireError };
export type Ack<T> = Ok<T> | Fail;

/** The acknowledgement callback Socket.IO hands to a server handler. */
export type AckFn<T> = (response: Ack<T>) => void;

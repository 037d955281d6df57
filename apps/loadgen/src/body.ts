/**
 * The timing header every load message carries at the start of its body, as compact JSON:
 * `{"t":1795400780620.773,"d":42} lorem…`. `t` is the sender's `performance.timeOrigin +
 * performance.now()` — epoch milliseconds with sub-millisecond precision on a clock all worker threads
 * of the process share — so any receiving device, in any worker, computes end-to-end latency against
 * the same clock. `d` is the sending device's index: the device that sees its own message (from its
 * ack) does not count it as a delivery.
 */
export interface BodyHeader {
  t: number;
  d: number;
}

const PREFIX = '{"t":';
const FILLER = 'the quick brown fox jumps over the lazy dog 0123456789 ';

/** Wall-clock milliseconds with sub-ms precision, identical across the worker threads of one process. */
export function clock(): number {
  return performance.timeOrigin + performance.now();
}

export function encodeBody(header: BodyHeader, size: number): string {
  const head = `${PREFIX}${header.t},"d":${header.d}}`;
  let body = head;
  while (body.length < size) body += body.length === head.length ? ' ' : FILLER;
  return body.length > size && size > head.length ? body.slice(0, size).trimEnd() : body;
}

/** The header of a load message; null for anything else (system messages, other clients). */
export function decodeBody(body: string): BodyHeader | null {
  if (!body.startsWith(PREFIX)) return null;
  const end = body.indexOf('}');
  if (end < 0) return null;
  try {
    const header = JSON.parse(body.slice(0, end + 1)) as Partial<BodyHeader>;
    if (typeof header.t !== 'number' || typeof header.d !== 'number' || !Number.isFinite(header.t)) return null;
    return { t: header.t, d: header.d };
  } catch {
    return null;
  }
}

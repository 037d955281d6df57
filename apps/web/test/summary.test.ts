// The sparklines' text alternative (apps/web/admin/summary.ts): what a screen reader hears instead
// of the picture. Pure functions, no browser.
import { describe as suite, expect, it } from 'vitest';
import { describe, summarize } from '../admin/summary.ts';

suite('sparkline text alternatives', () => {
  it('states min, max and last, skipping gaps', () => {
    expect(summarize([3, null, 0, 12.25, 4], 'msgs/s')).toBe('min 0 msgs/s, max 12.3 msgs/s, last 4 msgs/s');
    expect(summarize([5, 7, null], 'ms')).toBe('min 5 ms, max 7 ms, last 7 ms');
    expect(summarize([1234.5], '')).toBe('min 1,234.5, max 1,234.5, last 1,234.5');
  });

  it('says "no data" for a series without a value', () => {
    expect(summarize([], 'ms')).toBe('no data');
    expect(summarize([null, Number.NaN], 'ms')).toBe('no data');
  });

  it('names each series of a chart with more than one', () => {
    const times = [1000, 3000];
    expect(describe({ title: 'Sockets on node-1, last 10 minutes', unit: 'sockets', times, spanMs: 600_000, series: [{ name: 'sockets', values: [1, 2] }] })).toBe(
      'Sockets on node-1, last 10 minutes: min 1 sockets, max 2 sockets, last 2 sockets',
    );
    expect(
      describe({
        title: 'Messages on node-2',
        unit: 'msgs/s',
        times,
        spanMs: 600_000,
        series: [
          { name: 'in', values: [0, 2] },
          { name: 'out', values: [1, 3] },
        ],
      }),
    ).toBe('Messages on node-2: in: min 0 msgs/s, max 2 msgs/s, last 2 msgs/s; out: min 1 msgs/s, max 3 msgs/s, last 3 msgs/s');
  });
});

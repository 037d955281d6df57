import { describe, expect, it } from 'vitest';
import { GroupCommit, type GroupCommitOptions } from '../src/domain/group-commit.ts';

// GroupCommit alone: its statements are functions the test settles by hand, so every ordering and
// failure is decided here rather than by a database's timing.

interface Item {
  key: string;
  value: string;
}

/** One call of `flush` or `flushOne`: what it carried, and the means to settle it. */
interface Statement {
  items: string[];
  alone: boolean;
  commit(results?: string[]): void;
  fail(error: unknown): void;
}

/** A GroupCommit whose statements wait in `statements` until the test commits or fails them. */
function harness(options: Partial<Pick<GroupCommitOptions<Item, string>, 'maxBatch' | 'maxInFlight' | 'retryAlone'>> & { flushOne?: boolean } = {}) {
  const statements: Statement[] = [];
  const flushed: number[] = [];
  const statement = (items: Item[], alone: boolean) =>
    new Promise<string[]>((resolve, reject) => {
      statements.push({
        items: items.map((item) => item.value),
        alone,
        commit: (results) => resolve(results ?? items.map((item) => `ok:${item.value}`)),
        fail: reject,
      });
    });
  const commit = new GroupCommit<Item, string>({
    key: (item) => item.key,
    maxBatch: options.maxBatch ?? 100,
    maxInFlight: options.maxInFlight ?? 1,
    flush: (items) => statement(items, false),
    ...(options.flushOne && { flushOne: async (item: Item) => (await statement([item], true))[0]! }),
    ...(options.retryAlone && { retryAlone: options.retryAlone }),
    onFlush: (items) => flushed.push(items),
  });
  /** Writes `value` under `key` and records how its promise settled. */
  const write = (value: string, key = 'k') => {
    const outcome: { result?: string; error?: unknown; settled: boolean } = { settled: false };
    const done = commit.write({ key, value }).then(
      (result) => Object.assign(outcome, { result, settled: true }),
      (error: unknown) => Object.assign(outcome, { error, settled: true }),
    );
    return Object.assign(outcome, { done });
  };
  /** The statement at `index` once GroupCommit has issued it (issuing follows a settled promise by a few ticks). */
  const nth = async (index: number): Promise<Statement> => {
    for (let tick = 0; tick < 50 && statements.length <= index; tick++) await new Promise((resolve) => setImmediate(resolve));
    const found = statements[index];
    if (!found) throw new Error(`statement ${index} was never issued (${statements.length} were)`);
    return found;
  };
  const settle = () => new Promise((resolve) => setImmediate(resolve));
  return { statements, flushed, write, nth, settle };
}

describe('GroupCommit', () => {
  it('writes an item at once while a slot is free, and resolves it only after its statement committed', async () => {
    const { write, nth, settle } = harness();
    const a = write('a');
    const first = await nth(0);
    expect(first.items).toEqual(['a']);
    await settle();
    expect(a.settled).toBe(false);
    first.commit();
    await a.done;
    expect(a.result).toBe('ok:a');
  });

  it('carries what arrived during a statement in the next one, in arrival order, with each result to its own caller', async () => {
    const { write, nth, flushed } = harness();
    const first = write('first');
    const inFlight = await nth(0);
    const queued = ['b', 'c', 'd', 'e'].map((value) => write(value));
    inFlight.commit();
    const batch = await nth(1);
    expect(batch.items).toEqual(['b', 'c', 'd', 'e']);
    batch.commit(['r:b', 'r:c', 'r:d', 'r:e']);
    await Promise.all([first.done, ...queued.map((item) => item.done)]);
    expect([first, ...queued].map((item) => item.result)).toEqual(['ok:first', 'r:b', 'r:c', 'r:d', 'r:e']);
    expect(flushed).toEqual([1, 4]);
  });

  it('carries at most maxBatch items per statement, and has at most maxInFlight statements at once', async () => {
    const { write, nth, statements, settle } = harness({ maxBatch: 2, maxInFlight: 2 });
    const items = ['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((value) => write(value, value));
    // Two slots: a and b go out alone at once; the rest queue.
    const [one, two] = [await nth(0), await nth(1)];
    expect([one.items, two.items]).toEqual([['a'], ['b']]);
    await settle();
    expect(statements).toHaveLength(2);
    one.commit();
    expect((await nth(2)).items).toEqual(['c', 'd']);
    await settle();
    expect(statements).toHaveLength(3);
    two.commit();
    expect((await nth(3)).items).toEqual(['e', 'f']);
    (await nth(2)).commit();
    expect((await nth(4)).items).toEqual(['g']);
    for (const index of [3, 4]) (await nth(index)).commit();
    await Promise.all(items.map((item) => item.done));
    expect(items.map((item) => item.result)).toEqual(['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((value) => `ok:${value}`));
    expect(statements.every((statement) => statement.items.length <= 2)).toBe(true);
  });

  it('never has two statements in flight for one key: later writes to it wait, other keys take the free slot', async () => {
    const { write, nth, statements, settle } = harness({ maxInFlight: 2 });
    const a1 = write('a1', 'a');
    const a1Statement = await nth(0);
    const a2 = write('a2', 'a');
    const b1 = write('b1', 'b');
    // a2 waits for a1 although a slot is free; b1 takes it, and overtakes a2.
    const b1Statement = await nth(1);
    expect(b1Statement.items).toEqual(['b1']);
    await settle();
    expect(statements).toHaveLength(2);
    b1Statement.commit();
    await b1.done;
    await settle();
    expect(statements).toHaveLength(2);
    expect(a2.settled).toBe(false);
    a1Statement.commit();
    await a1.done;
    const a2Statement = await nth(2);
    expect(a2Statement.items).toEqual(['a2']);
    a2Statement.commit();
    await a2.done;
    expect([a1.result, a2.result, b1.result]).toEqual(['ok:a1', 'ok:a2', 'ok:b1']);
  });

  it('carries several items of one key in one statement, in arrival order, once no statement of that key is in flight', async () => {
    const { write, nth } = harness({ maxInFlight: 2 });
    const a0 = write('a0', 'a');
    const a0Statement = await nth(0);
    // a1 waits for a0; b1 takes the free slot; c1 and a2 find both slots taken.
    const [a1, b1, c1, a2] = [write('a1', 'a'), write('b1', 'b'), write('c1', 'c'), write('a2', 'a')];
    const b1Statement = await nth(1);
    expect(b1Statement.items).toEqual(['b1']);
    a0Statement.commit();
    const next = await nth(2);
    expect(next.items).toEqual(['a1', 'c1', 'a2']);
    next.commit();
    b1Statement.commit();
    await Promise.all([a0, a1, b1, c1, a2].map((item) => item.done));
    expect([a0, a1, b1, c1, a2].map((item) => item.result)).toEqual(['ok:a0', 'ok:a1', 'ok:b1', 'ok:c1', 'ok:a2']);
  });

  it('retries a failed batch one item per statement, so one bad item fails alone', async () => {
    const { write, nth, flushed } = harness({ flushOne: true });
    const blocker = write('blocker', 'x');
    const inFlight = await nth(0);
    const [good1, bad, good2] = [write('good1', 'a'), write('bad', 'b'), write('good2', 'c')];
    inFlight.commit();
    const batch = await nth(1);
    expect(batch.items).toEqual(['good1', 'bad', 'good2']);
    batch.fail(new Error('deadlock detected'));
    // Retried in arrival order, each alone, one after the other.
    const retry1 = await nth(2);
    expect([retry1.items, retry1.alone]).toEqual([['good1'], true]);
    retry1.commit(['alone:good1']);
    const retry2 = await nth(3);
    expect(retry2.items).toEqual(['bad']);
    retry2.fail(new Error('bad item'));
    const retry3 = await nth(4);
    expect(retry3.items).toEqual(['good2']);
    retry3.commit(['alone:good2']);
    await Promise.all([blocker, good1, bad, good2].map((item) => item.done));
    expect([good1.result, good2.result]).toEqual(['alone:good1', 'alone:good2']);
    expect(bad.error).toEqual(new Error('bad item'));
    // onFlush counts statements as GroupCommit plans them: the batch once, not its retries.
    expect(flushed).toEqual([1, 3]);
  });

  it('retries through flush([item]) when no flushOne is given', async () => {
    const { write, nth } = harness();
    const blocker = write('blocker', 'x');
    const inFlight = await nth(0);
    const [a, b] = [write('a', 'a'), write('b', 'b')];
    inFlight.commit();
    (await nth(1)).fail(new Error('serialization failure'));
    const retryA = await nth(2);
    expect([retryA.items, retryA.alone]).toEqual([['a'], false]);
    retryA.commit();
    const retryB = await nth(3);
    expect(retryB.items).toEqual(['b']);
    retryB.commit();
    await Promise.all([blocker.done, a.done, b.done]);
    expect([a.result, b.result]).toEqual(['ok:a', 'ok:b']);
  });

  it('fails every item of a batch with its error, without retries, when retryAlone says it is not worth it', async () => {
    const down = new Error('database unavailable');
    const { write, nth, statements, settle } = harness({ flushOne: true, retryAlone: (error) => error !== down });
    const blocker = write('blocker', 'x');
    const inFlight = await nth(0);
    const queued = [write('a', 'a'), write('b', 'b')];
    inFlight.commit();
    (await nth(1)).fail(down);
    await Promise.all(queued.map((item) => item.done));
    expect(queued.map((item) => item.error)).toEqual([down, down]);
    await settle();
    expect(statements).toHaveLength(2);
    // The keys are free again: the next write goes out at once.
    const after = write('after', 'a');
    const next = await nth(2);
    expect(next.items).toEqual(['after']);
    next.commit();
    await Promise.all([blocker.done, after.done]);
    expect(after.result).toBe('ok:after');
  });

  it('fails a lone item with its own error, without a retry, and carries on with the queue', async () => {
    const { write, nth, statements, settle } = harness();
    const alone = write('alone');
    (await nth(0)).fail(new Error('check violation'));
    await alone.done;
    expect(alone.error).toEqual(new Error('check violation'));
    await settle();
    expect(statements).toHaveLength(1);
    const next = write('next');
    (await nth(1)).commit();
    await next.done;
    expect(next.result).toBe('ok:next');
  });
});

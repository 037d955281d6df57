import { backoffDelay } from '@chat/protocol';
import { describe, expect, it } from 'vitest';

const policy = { initialMs: 250, maxMs: 10_000 };

describe('backoffDelay', () => {
  it('doubles the ceiling per attempt and jitters between half and all of it', () => {
    expect(backoffDelay(1, policy, 0, () => 0)).toBe(125);
    expect(backoffDelay(1, policy, 0, () => 1)).toBe(250);
    expect(backoffDelay(3, policy, 0, () => 1)).toBe(1000);
    expect(backoffDelay(3, policy, 0, () => 0)).toBe(500);
  });

  it('never passes maxMs, however many attempts', () => {
    expect(backoffDelay(40, policy, 0, () => 1)).toBe(10_000);
    expect(backoffDelay(10_000, policy, 0, () => 1)).toBe(10_000);
  });

  it('never waits less than the server asked for', () => {
    expect(backoffDelay(1, policy, 5_000, () => 0)).toBe(5_000);
    expect(backoffDelay(6, policy, 100, () => 1)).toBe(8_000);
  });

  it('treats an attempt below 1 as the first', () => {
    expect(backoffDelay(0, policy, 0, () => 1)).toBe(250);
  });
});

import { describe, expect, it } from 'vitest';
import { RevocationList } from '../src/domain/revocations.ts';

/** The in-memory rule every node applies to each token: forward only, and forgotten once no live token can match. */
describe('RevocationList', () => {
  const lifetimeSeconds = 3600;

  it("refuses tokens issued strictly before the instant, and only the user's", () => {
    const now = 10_000_000;
    const list = new RevocationList(lifetimeSeconds, () => now);
    list.apply('alice', now - 1000);
    expect(list.isRevoked('alice', now - 1001)).toBe(true);
    expect(list.isRevoked('alice', now - 1000)).toBe(false);
    expect(list.isRevoked('bob', 0)).toBe(false);
    expect(list.revokedBefore('alice')).toBe(now - 1000);
  });

  it('only moves forward: an older or repeated notice changes nothing', () => {
    const now = 10_000_000;
    const list = new RevocationList(lifetimeSeconds, () => now);
    list.apply('alice', now - 10);
    list.apply('alice', now - 500);
    expect(list.revokedBefore('alice')).toBe(now - 10);
    list.apply('alice', now);
    expect(list.revokedBefore('alice')).toBe(now);
  });

  it('ignores and drops a revocation older than the longest token lifetime, which no live token can match', () => {
    let now = 10_000_000;
    const list = new RevocationList(lifetimeSeconds, () => now);
    list.apply('stale', now - lifetimeSeconds * 1000);
    expect(list.size).toBe(0);
    list.apply('alice', now);
    now += lifetimeSeconds * 1000;
    expect(list.revokedBefore('alice')).toBeNull();
    list.apply('bob', now);
    now += lifetimeSeconds * 1000 + 1;
    list.prune();
    expect(list.size).toBe(0);
  });
});

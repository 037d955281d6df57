import { eventually } from '@chat/testkit/eventually';
import { testNode } from '@chat/testkit/nodes';
import { signToken } from '@chat/testkit/tokens';
import { uniqueUser } from '@chat/testkit/users';
import { describe, expect, it } from 'vitest';
import { openRaw } from './helpers/hostile.ts';

/**
 * A client that leaves in the middle of its handshake (after CONNECT, while the node checks its
 * token and user and registers it) must not stay in presence: no socket would ever take it back,
 * and its user would look online for as long as the node lives.
 */
describe('presence of handshakes the client abandons', () => {
  it('leaves nobody online after 100 clients close right after sending CONNECT', async () => {
    const node = await testNode();
    const userId = uniqueUser('abandoning');
    const token = signToken({ sub: userId });
    const attempts = Array.from({ length: 100 }, async (_, i) => {
      const raw = await openRaw(node.url);
      await raw.next((frame) => frame.startsWith('0{'));
      raw.send(`40${JSON.stringify({ token })}`);
      // Some leave at once, some a moment later: somewhere inside the handshake's steps.
      if (i % 4 !== 0) await new Promise((resolve) => setTimeout(resolve, i % 7));
      raw.close();
      await raw.closed;
    });
    await Promise.all(attempts);
    // A leaked registration never goes away while the node lives; the removals take a moment.
    await eventually(async () => {
      const [view] = await node.app.state.presence.get([userId], { selfView: true });
      expect(view).toMatchObject({ online: false });
    });
  });
});

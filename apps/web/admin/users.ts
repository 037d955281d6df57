import { byId, h } from '../page/dom.ts';
import type { AdminApi } from './api.ts';
import type { AdminUser } from '@chat/protocol';
import { confirmAction } from './confirm.ts';
import { announce, clearError, showError } from './feedback.ts';
import { count, instant } from './format.ts';

/**
 * The user lookup: a user's profile, status and connected devices, with buttons that disconnect every
 * device, or disconnect and revoke (tokens issued until now are refused from then on). Both ask first.
 */
export class UserLookup {
  readonly #api: () => AdminApi | null;
  readonly #error = byId('lookup-error');
  readonly #card = byId('user');
  #user: AdminUser | null = null;

  constructor(api: () => AdminApi | null) {
    this.#api = api;
    byId<HTMLFormElement>('lookup-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const userId = byId<HTMLInputElement>('lookup-user').value.trim();
      if (userId) void this.#lookUp(userId);
    });
    byId('user-disconnect').addEventListener('click', () => void this.#disconnect(false));
    byId('user-revoke').addEventListener('click', () => void this.#disconnect(true));
  }

  clear(): void {
    this.#user = null;
    this.#card.hidden = true;
    byId<HTMLInputElement>('lookup-user').value = '';
    clearError(this.#error);
  }

  async #lookUp(userId: string, quiet = false): Promise<void> {
    const api = this.#api();
    if (!api) return;
    clearError(this.#error);
    try {
      const user = await api.user(userId);
      this.#show(user);
      if (!quiet) announce(`${user.displayName ?? user.id}: ${user.devices.length === 1 ? '1 device' : `${user.devices.length} devices`} connected.`);
    } catch (error) {
      this.#user = null;
      this.#card.hidden = true;
      showError(this.#error, error);
    }
  }

  #show(user: AdminUser): void {
    this.#user = user;
    byId('user-title').textContent = user.displayName === null || user.displayName === user.id ? user.id : `${user.displayName} (${user.id})`;
    byId('user-id').textContent = user.id;
    byId('user-status').textContent = user.status;
    byId('user-last-seen').textContent = instant(user.lastSeenAt);
    byId('user-conversations').textContent = count(user.conversations);
    byId('user-revoked').textContent = user.revokedBefore ? instant(user.revokedBefore) : 'none revoked';
    byId('devices-body').replaceChildren(
      ...user.devices.map((device) =>
        h(
          'tr',
          { 'data-connection': device.connectionId, 'data-node': device.nodeId },
          h('th', { scope: 'row' }, h('code', {}, device.connectionId)),
          h('td', {}, device.nodeId),
          h('td', {}, device.transport),
          h('td', {}, instant(device.connectedAt)),
          h('td', {}, device.address ?? '–'),
        ),
      ),
    );
    byId('devices-empty').hidden = user.devices.length > 0;
    this.#card.hidden = false;
  }

  async #disconnect(revoke: boolean): Promise<void> {
    const api = this.#api();
    const user = this.#user;
    if (!api || !user) return;
    const name = user.displayName ?? user.id;
    const confirmed = await confirmAction(
      revoke
        ? {
            title: `Disconnect and revoke ${user.id}?`,
            text: `Every device of ${name} is disconnected, and every token issued to them until now is refused: they must sign in again.`,
            action: 'Disconnect and revoke',
          }
        : {
            title: `Disconnect ${user.id}?`,
            text: `Every device of ${name} is disconnected. Their tokens stay valid, so their apps may reconnect at once.`,
            action: 'Disconnect',
          },
    );
    if (!confirmed) return;
    clearError(this.#error);
    try {
      const result = await api.disconnect(user.id, revoke);
      const devices = result.disconnected === 1 ? '1 device' : `${result.disconnected} devices`;
      announce(`Disconnected ${devices} of ${user.id}${revoke && result.revokedBefore ? `; tokens issued before ${instant(result.revokedBefore)} are refused` : ''}.`);
      await this.#lookUp(user.id, true);
    } catch (error) {
      showError(this.#error, error);
    }
  }
}

/**
 * The admin API (`/v1/admin/*` on the page's own origin) over plain fetch, with the operator's key as
 * a bearer token. Every failure is an {@link AdminApiError} carrying the catalogued code and message
 * the node answered, or a code of the page's own (`network`, `bad_response`) when there was no such answer.
 */

import type { AdminDisconnectResult, AdminNodeStatus, AdminNodesHistory, AdminUser } from '@chat/protocol';

export class AdminApiError extends Error {
  readonly code: string;
  /** The HTTP status; 0 when the request never got an answer. */
  readonly status: number;

  constructor(code: string, message: string, status: number) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

type Answer<T> = ({ ok: true } & T) | { ok: false; error: { code: string; message: string } };

export class AdminApi {
  readonly #key: string;

  constructor(key: string) {
    this.#key = key;
  }

  nodes(): Promise<AdminNodeStatus[]> {
    return this.#call<{ nodes: AdminNodeStatus[] }>('GET', '/v1/admin/nodes').then((answer) => answer.nodes);
  }

  history(): Promise<AdminNodesHistory> {
    return this.#call<AdminNodesHistory>('GET', '/v1/admin/nodes/history');
  }

  drain(nodeId: string): Promise<{ node: string; draining: boolean }> {
    return this.#call('POST', `/v1/admin/nodes/${encodeURIComponent(nodeId)}/drain`);
  }

  user(userId: string): Promise<AdminUser> {
    return this.#call<{ user: AdminUser }>('GET', `/v1/admin/users/${encodeURIComponent(userId)}`).then((answer) => answer.user);
  }

  disconnect(userId: string, revoke: boolean): Promise<AdminDisconnectResult> {
    return this.#call('POST', `/v1/admin/users/${encodeURIComponent(userId)}/disconnect`, { revoke });
  }

  async #call<T>(method: 'GET' | 'POST', path: string, body?: object): Promise<T> {
    let response: Response;
    try {
      response = await fetch(path, {
        method,
        headers: { authorization: `Bearer ${this.#key}`, ...(body && { 'content-type': 'application/json' }) },
        // A POST without a body still sends JSON: the routes validate it as an object.
        ...(method === 'POST' && { body: JSON.stringify(body ?? {}) }),
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch (error) {
      throw new AdminApiError('network', `The node did not answer: ${error instanceof Error ? error.message : String(error)}`, 0);
    }
    let answer: Answer<T>;
    try {
      answer = (await response.json()) as Answer<T>;
    } catch {
      throw new AdminApiError('bad_response', `The node answered ${response.status} without a JSON body`, response.status);
    }
    if (!answer || typeof answer !== 'object' || typeof answer.ok !== 'boolean') {
      throw new AdminApiError('bad_response', `The node answered ${response.status} with an unexpected body`, response.status);
    }
    if (!answer.ok) throw new AdminApiError(answer.error?.code ?? 'bad_response', answer.error?.message ?? `HTTP ${response.status}`, response.status);
    return answer as T;
  }
}

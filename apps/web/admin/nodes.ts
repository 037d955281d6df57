import { h } from '../page/dom.ts';
import type { AdminNodeStatus } from '@chat/protocol';
import { bytes, count, duration, instant, milliseconds } from './format.ts';

const COLUMNS = ['state', 'version', 'uptime', 'sockets', 'users', 'in', 'out', 'ack', 'lag', 'heap', 'heartbeat'] as const;
type Column = (typeof COLUMNS)[number];
const NUMERIC = new Set<Column>(['sockets', 'users', 'in', 'out', 'ack', 'lag', 'heap']);

interface Row {
  element: HTMLTableRowElement;
  cells: Record<Column, HTMLTableCellElement>;
  drain: HTMLButtonElement;
}

function state(node: AdminNodeStatus): { key: string; text: string } {
  if (node.draining) return { key: 'draining', text: 'Draining' };
  if (!node.ready) return { key: 'not-ready', text: 'Not ready' };
  return { key: 'ready', text: 'Ready' };
}

function text(node: AdminNodeStatus, column: Column): string {
  switch (column) {
    case 'state':
      return state(node).text;
    case 'version':
      return node.version;
    case 'uptime':
      return duration(node.uptimeSeconds);
    case 'sockets':
      return count(node.sockets);
    case 'users':
      return count(node.users);
    case 'in':
      return count(node.msgsInPerSecond);
    case 'out':
      return count(node.msgsOutPerSecond);
    case 'ack':
      return milliseconds(node.ackP99Ms);
    case 'lag':
      return milliseconds(node.eventLoopLagMs);
    case 'heap':
      return bytes(node.heapUsedBytes);
    case 'heartbeat':
      return instant(node.lastHeartbeatAt);
  }
}

/**
 * The nodes table. Rows are keyed by node id and updated in place on every refresh, so a keyboard
 * user's focus on a row's Drain button survives the 2-second refresh; rows of nodes that stopped
 * reporting are removed. A draining node's button is disabled.
 */
export class NodesTable {
  readonly #body: HTMLTableSectionElement;
  readonly #empty: HTMLElement;
  readonly #updated: HTMLElement;
  readonly #onDrain: (nodeId: string, button: HTMLButtonElement) => void;
  readonly #rows = new Map<string, Row>();

  constructor(options: { body: HTMLTableSectionElement; empty: HTMLElement; updated: HTMLElement; onDrain: (nodeId: string, button: HTMLButtonElement) => void }) {
    this.#body = options.body;
    this.#empty = options.empty;
    this.#updated = options.updated;
    this.#onDrain = options.onDrain;
  }

  update(nodes: readonly AdminNodeStatus[]): void {
    const sorted = [...nodes].sort((a, b) => a.id.localeCompare(b.id, 'en', { numeric: true }));
    const seen = new Set<string>();
    let previous: Element | null = null;
    for (const node of sorted) {
      seen.add(node.id);
      const row = this.#rows.get(node.id) ?? this.#add(node.id);
      const { key } = state(node);
      row.element.dataset['state'] = key;
      for (const column of COLUMNS) {
        const value = text(node, column);
        if (row.cells[column].textContent !== value) row.cells[column].textContent = value;
      }
      row.cells.state.dataset['state'] = key;
      row.drain.disabled = node.draining;
      // Sorted by id; a row already in its place is never moved (moving an element drops its focus).
      const expected: Element | null = previous ? previous.nextElementSibling : this.#body.firstElementChild;
      if (expected !== row.element) this.#body.insertBefore(row.element, expected);
      previous = row.element;
    }
    for (const [id, row] of this.#rows) {
      if (!seen.has(id)) {
        row.element.remove();
        this.#rows.delete(id);
      }
    }
    this.#empty.hidden = nodes.length > 0;
    this.#updated.textContent = `Last refreshed at ${instant(Date.now())}.`;
  }

  clear(): void {
    this.#body.replaceChildren();
    this.#rows.clear();
    this.#updated.textContent = '';
  }

  #add(nodeId: string): Row {
    const cells = Object.fromEntries(COLUMNS.map((column) => [column, h('td', { class: NUMERIC.has(column) ? `num ${column}` : column })])) as Record<Column, HTMLTableCellElement>;
    const drain: HTMLButtonElement = h(
      'button',
      { type: 'button', class: 'danger small', onclick: () => this.#onDrain(nodeId, drain) },
      'Drain',
      h('span', { class: 'visually-hidden' }, ` ${nodeId}`),
    );
    const element = h('tr', { 'data-node': nodeId }, h('th', { scope: 'row' }, nodeId), ...COLUMNS.map((column) => cells[column]), h('td', {}, drain));
    const row = { element, cells, drain };
    this.#rows.set(nodeId, row);
    return row;
  }
}

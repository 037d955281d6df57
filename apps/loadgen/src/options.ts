import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';

/** An inclusive integer range, written `a..b` (or just `a`). */
export interface Range {
  min: number;
  max: number;
}

export type Transport = 'websocket' | 'polling' | 'mixed';
export type ReceiptMode = 'none' | 'delivered' | 'read';
export type Arrival = 'poisson' | 'uniform';

/** A run, fully resolved: every default applied, every value checked. */
export interface Options {
  url: string;
  /** Devices (connections), over all users. */
  clients: number;
  conversations: number;
  groupSize: Range;
  devicesPerUser: Range;
  /** Messages per second over all senders. */
  rate: number;
  arrival: Arrival;
  durationMs: number;
  /** New connections per second while ramping up. */
  ramp: number;
  transport: Transport;
  /** Which node a device lands on behind the load balancer (see the flag). */
  placement: 'random' | 'conversation' | 'one';
  /** Planned disconnect + reconnect of a random device, per second over all devices. */
  churn: number;
  offlineMs: Range;
  /** Typing bursts per message sent. */
  typing: number;
  receipts: ReceiptMode;
  /** Share of received messages a device marks read (with `receipts: read`). */
  readRatio: number;
  /** Presence status changes per second over all devices. */
  presence: number;
  bodySize: number;
  workers: number;
  graceMs: number;
  ackTimeoutMs: number;
  setupTimeoutMs: number;
  tokenTtlSeconds: number;
  jwtSecret: string | null;
  jwtIssuer: string | null;
  jwtAudience: string | null;
  runId: string;
  seed: number;
  out: string;
  html: string;
  quiet: boolean;
  /**
   * Keep every acked message's conversation, seq and id and return them from the run (the chaos
   * harness checks them against PostgreSQL). Not a flag: it costs memory per message.
   * @default false
   */
  recordAcked: boolean;
}

export class UsageError extends Error {
  override name = 'UsageError';
}

type Raw = string | number | boolean;

/** A command-line flag as --help shows it; the chaos harness describes its flags the same way. */
export interface Flag {
  type: 'string' | 'boolean';
  arg?: string;
  /** Shown in --help; derived defaults are described in words. */
  default: string;
  help: string;
}

/** Every flag, in --help order. Scenario files use the same names as keys. */
export const flags = {
  url: { type: 'string', arg: 'URL', default: 'http://127.0.0.1:3000', help: 'Server or load balancer origin. Only loopback targets belong on a shared machine.' },
  clients: { type: 'string', arg: 'N', default: '100', help: 'Connections (devices) in total, over all users.' },
  conversations: { type: 'string', arg: 'N', default: 'clients/4', help: 'Conversations, created by their first member through the SDK before the load starts.' },
  'group-size': { type: 'string', arg: 'A..B', default: '2', help: 'Members per conversation: 2 opens direct conversations, more creates groups (random in A..B).' },
  'devices-per-user': { type: 'string', arg: 'A..B', default: '1', help: 'Devices per user (random in A..B); every message is expected on every device of every member.' },
  rate: { type: 'string', arg: 'N/s', default: '100/s', help: 'Messages sent per second over all senders, open loop (sends do not wait for acks). Also N/m.' },
  arrival: { type: 'string', arg: 'poisson|uniform', default: 'poisson', help: 'Gaps between sends: exponential (Poisson process) or evenly spaced.' },
  duration: { type: 'string', arg: 'TIME', default: '30s', help: 'Length of the load phase (after ramp-up and conversation set-up): 500ms, 60s, 2m.' },
  ramp: { type: 'string', arg: 'N/s', default: '200/s', help: 'New connections per second during ramp-up.' },
  transport: { type: 'string', arg: 'websocket|polling|mixed', default: 'websocket', help: 'Socket.IO transport per device; mixed gives each device one of the two at random.' },
  placement: {
    type: 'string',
    arg: 'random|conversation|one',
    default: 'random',
    help: "Which node a device lands on behind the load balancer: random (the SDK's own sticky id per device), or conversation (every device of a user sends its user's first conversation as the sticky key, so the members of a 1:1 conversation share a node: a yardstick for what crossing nodes costs), or one (every device sends the same key: all on one node, the others idle).",
  },
  churn: {
    type: 'string',
    arg: 'N/s',
    default: 'clients/200 per s',
    help: 'Reconnect churn: per second, a random device disconnects and reconnects after --offline; resync must bring what it missed. 0 disables.',
  },
  offline: { type: 'string', arg: 'A..B', default: '500ms..3s', help: 'How long a churned device stays offline (TIME..TIME).' },
  typing: { type: 'string', arg: 'RATIO', default: '0.2', help: 'Typing bursts (a few keystrokes through the SDK) per message sent.' },
  receipts: { type: 'string', arg: 'none|delivered|read', default: 'read', help: "none: no receipts; delivered: the SDK's automatic delivered receipts; read: those plus read receipts." },
  'read-ratio': { type: 'string', arg: 'RATIO', default: '0.5', help: 'With --receipts read: share of received messages a device marks read (coalesced, once a second per conversation).' },
  presence: { type: 'string', arg: 'N/s', default: 'clients/60 per s', help: 'Presence status changes (online/away/dnd) per second over all devices. 0 disables.' },
  'body-size': { type: 'string', arg: 'CHARS', default: '80', help: 'Message body length (a timing prefix plus filler).' },
  workers: { type: 'string', arg: 'N', default: 'cores-1, at least 1', help: 'Worker threads; each owns a slice of the users and all their devices.' },
  grace: { type: 'string', arg: 'TIME', default: '5s', help: 'After the load: how long to wait for in-flight deliveries and resyncs before counting what is missing as lost.' },
  'ack-timeout': { type: 'string', arg: 'TIME', default: '10s', help: "The SDK's ack timeout per request (a send is retried with the same clientMsgId after it)." },
  'setup-timeout': { type: 'string', arg: 'TIME', default: '120s + clients/ramp', help: 'Deadline of each set-up phase (connecting, creating conversations).' },
  'token-ttl': { type: 'string', arg: 'TIME', default: 'duration + 1h', help: 'Lifetime of the minted tokens; the server refuses longer ones than its JWT_MAX_LIFETIME_SECONDS (24 h by default).' },
  'jwt-secret': {
    type: 'string',
    arg: 'SECRET',
    default: '$LOADGEN_JWT_SECRET',
    help: "Sign HS256 tokens locally with the server's JWT_SECRET instead of calling POST /v1/dev/token (which needs DEV_TOKENS=true).",
  },
  'jwt-issuer': { type: 'string', arg: 'ISS', default: 'none', help: 'iss claim of locally signed tokens (when the server sets JWT_ISSUER).' },
  'jwt-audience': { type: 'string', arg: 'AUD', default: 'none', help: 'aud claim of locally signed tokens (when the server sets JWT_AUDIENCE).' },
  'run-id': { type: 'string', arg: 'ID', default: 'random', help: 'Names the users lg-<run-id>-<n>; unique per run so runs never share users.' },
  seed: { type: 'string', arg: 'N', default: 'random', help: "Seed of the plan (devices per user, conversation members, transports) and of the load's random choices." },
  out: { type: 'string', arg: 'FILE', default: 'reports/loadgen-<run-id>.json', help: 'The JSON summary.' },
  html: { type: 'string', arg: 'FILE', default: '--out with .html', help: 'The self-contained HTML report (inline SVG charts, works offline).' },
  scenario: { type: 'string', arg: 'FILE', default: 'none', help: 'A JSON object whose keys are these flags (without --); flags given on the command line override it.' },
  quiet: { type: 'boolean', default: 'false', help: 'No live progress line, only the final summary.' },
  help: { type: 'boolean', default: 'false', help: 'This text.' },
} as const satisfies Record<string, Flag>;

export type FlagName = keyof typeof flags;

export function helpText(): string {
  const lines = [
    'npm run loadtest -- [flags]',
    '',
    'Drives a chat node (or nginx in front of a cluster) with SDK clients spread over worker threads: ramps',
    'up connections, creates conversations, then sends messages at an open-loop rate with typing, receipts,',
    'presence changes and reconnect churn, and checks that every acked message reaches every device of every',
    'member exactly once. Prints a progress line every second, then writes a JSON summary and an HTML report.',
    '',
    'Flags (a value may also come from --scenario):',
  ];
  for (const [name, flag] of Object.entries(flags) as Array<[string, Flag]>) {
    const head = `  --${name}${flag.arg ? ` ${flag.arg}` : ''}`;
    lines.push(`${head.padEnd(40)} ${flag.help}`);
    if (flag.default !== 'false' && flag.default !== 'none') lines.push(`${''.padEnd(40)}   default: ${flag.default}`);
  }
  lines.push(
    '',
    "Rate limits: the server's per-user budgets (RATE_LIMIT_MESSAGE default 20/10s, i.e. 2 msgs/s per user;",
    'typing 10/10s; receipts 60/10s) apply to the load too. Either keep --rate / users and --typing within them',
    'or run the server with RATE_LIMITS=false; the loadgen warns when it sees rate_limited errors. Minting tokens',
    'through /v1/dev/token counts against REST_RATE_LIMIT_PER_MINUTE per address (default 600): for thousands',
    'of users raise it or pass --jwt-secret.',
    '',
    'Exit codes: 0 clean; 1 messages were lost or duplicated; 2 usage error; 3 the run could not be carried',
    'out (no connection, no acked message, a worker crashed).',
    '',
    'Example:',
    '  npm run loadtest -- --url http://127.0.0.1:8080 --clients 5000 --conversations 2000 --group-size 2..8 \\',
    '    --rate 2000/s --duration 60s --ramp 500/s --transport mixed --devices-per-user 1..3',
  );
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Value parsers: each takes a string or a JSON scalar (scenario files) and throws UsageError.
// ---------------------------------------------------------------------------------------------

function text(name: string, value: Raw): string {
  if (typeof value === 'boolean') throw new UsageError(`--${name}: expected a value, got ${value}`);
  return String(value).trim();
}

export function parseNumber(name: string, value: Raw, { min = -Infinity, max = Infinity, integer = false } = {}): number {
  const raw = text(name, value);
  const number = Number(raw);
  if (raw === '' || !Number.isFinite(number)) throw new UsageError(`--${name}: expected a number, got ${JSON.stringify(raw)}`);
  if (integer && !Number.isInteger(number)) throw new UsageError(`--${name}: expected an integer, got ${raw}`);
  if (number < min || number > max) throw new UsageError(`--${name}: expected ${min}..${max}, got ${raw}`);
  return number;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `500ms`, `60s`, `2m`, `1h`; a bare number is seconds. */
export function parseDuration(name: string, value: Raw): number {
  const raw = text(name, value);
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(raw);
  if (!match) throw new UsageError(`--${name}: expected a duration such as 500ms, 60s or 2m, got ${JSON.stringify(raw)}`);
  return Math.round(Number(match[1]) * UNITS[match[2] ?? 's']!);
}

/** `2000/s`, `120/m`, or a bare number per second. */
export function parseRate(name: string, value: Raw): number {
  const raw = text(name, value);
  const match = /^(\d+(?:\.\d+)?)(?:\/(s|m|h))?$/.exec(raw);
  if (!match) throw new UsageError(`--${name}: expected a rate such as 500/s or 120/m, got ${JSON.stringify(raw)}`);
  return (Number(match[1]) * 1000) / UNITS[match[2] ?? 's']!;
}

/** `a..b` or `a`, integers. */
export function parseRange(name: string, value: Raw, min: number, max: number): Range {
  const raw = text(name, value);
  const match = /^(\d+)(?:\.\.(\d+))?$/.exec(raw);
  if (!match) throw new UsageError(`--${name}: expected A..B or A (integers), got ${JSON.stringify(raw)}`);
  const range = { min: Number(match[1]), max: Number(match[2] ?? match[1]) };
  if (range.min > range.max || range.min < min || range.max > max) throw new UsageError(`--${name}: expected a range within ${min}..${max} with A <= B, got ${raw}`);
  return range;
}

function parseDurationRange(name: string, value: Raw): Range {
  const raw = text(name, value);
  const [low = '', high = low] = raw.split('..');
  const range = { min: parseDuration(name, low), max: parseDuration(name, high) };
  if (range.min > range.max) throw new UsageError(`--${name}: expected TIME..TIME with the first <= the second, got ${raw}`);
  return range;
}

function parseChoice<T extends string>(name: string, value: Raw, choices: readonly T[]): T {
  const raw = text(name, value);
  if (!(choices as readonly string[]).includes(raw)) throw new UsageError(`--${name}: expected one of ${choices.join(', ')}, got ${JSON.stringify(raw)}`);
  return raw as T;
}

function parseUrl(name: string, value: Raw): string {
  const raw = text(name, value);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`--${name}: expected an http(s) URL, got ${JSON.stringify(raw)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`--${name}: expected an http(s) URL, got ${JSON.stringify(raw)}`);
  return url.origin;
}

// ---------------------------------------------------------------------------------------------

export interface ParsedCommandLine {
  help: boolean;
  options: Options | null;
}

/**
 * Flags over scenario over defaults. `readScenario` is injected so tests need no files.
 * Throws UsageError for anything a person mistyped (unknown flag, bad value, impossible plan).
 */
export function parseCommandLine(argv: string[], readScenario: (path: string) => string, env: NodeJS.ProcessEnv = process.env): ParsedCommandLine {
  const parseOptions = Object.fromEntries(Object.entries(flags).map(([name, flag]) => [name, { type: flag.type }])) as Record<FlagName, { type: 'string' | 'boolean' }>;
  let parsed: ReturnType<typeof parseArgs<{ options: typeof parseOptions; args: string[]; strict: true; allowPositionals: false }>>;
  try {
    parsed = parseArgs({ args: argv, options: parseOptions, strict: true, allowPositionals: false });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  const given = parsed.values as Partial<Record<FlagName, Raw>>;
  if (given.help) return { help: true, options: null };

  let scenario: Partial<Record<FlagName, Raw>> = {};
  if (typeof given.scenario === 'string') scenario = loadScenario(given.scenario, readScenario);
  return { help: false, options: resolveOptions({ ...scenario, ...given }, env) };
}

function loadScenario(path: string, read: (path: string) => string): Partial<Record<FlagName, Raw>> {
  let content: string;
  try {
    content = read(path);
  } catch (error) {
    throw new UsageError(`--scenario: cannot read ${path}: ${error instanceof Error ? error.message : String(error)}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(content);
  } catch (error) {
    throw new UsageError(`--scenario: ${path} is not JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new UsageError(`--scenario: ${path} must hold a JSON object whose keys are flag names`);
  const result: Partial<Record<FlagName, Raw>> = {};
  for (const [key, value] of Object.entries(data)) {
    // A leading `$` or `//` key is a comment: scenario files are meant to be read by people too.
    if (key.startsWith('$') || key.startsWith('//')) continue;
    if (!(key in flags) || key === 'scenario' || key === 'help') throw new UsageError(`--scenario: ${path}: unknown key ${JSON.stringify(key)} (keys are the flag names without --)`);
    if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') throw new UsageError(`--scenario: ${path}: ${key} must be a string, number or boolean`);
    result[key as FlagName] = value;
  }
  return result;
}

export function resolveOptions(values: Partial<Record<FlagName, Raw>>, env: NodeJS.ProcessEnv = {}): Options {
  const get = (name: FlagName): Raw | undefined => values[name];
  const num = (name: FlagName, fallback: number, limits: { min?: number; max?: number; integer?: boolean }) => {
    const value = get(name);
    return value === undefined ? fallback : parseNumber(name, value, limits);
  };
  const rate = (name: FlagName, fallback: number) => {
    const value = get(name);
    return value === undefined ? fallback : parseRate(name, value);
  };
  const duration = (name: FlagName, fallback: number) => {
    const value = get(name);
    return value === undefined ? fallback : parseDuration(name, value);
  };
  const str = (name: FlagName): string | null => {
    const value = get(name);
    return value === undefined ? null : text(name, value);
  };

  const clients = num('clients', 100, { min: 2, max: 1_000_000, integer: true });
  const devicesPerUser = parseRange('devices-per-user', get('devices-per-user') ?? '1', 1, 100);
  const groupSize = parseRange('group-size', get('group-size') ?? '2', 2, 257);
  const conversations = num('conversations', Math.max(1, Math.ceil(clients / 4)), { min: 1, max: 1_000_000, integer: true });
  const durationMs = duration('duration', 30_000);
  if (durationMs < 100) throw new UsageError('--duration: expected at least 100ms');
  const ramp = rate('ramp', 200);
  if (ramp <= 0) throw new UsageError('--ramp: expected more than 0 connections per second');
  const runId = str('run-id') ?? randomBytes(4).toString('hex');
  if (!/^[A-Za-z0-9_-]{1,40}$/.test(runId)) throw new UsageError('--run-id: expected 1-40 of A-Z a-z 0-9 _ -');
  const seed = num('seed', randomBytes(4).readUInt32LE(0), { min: 0, max: 2 ** 32 - 1, integer: true });
  const out = str('out') ?? `reports/loadgen-${runId}.json`;
  const html = str('html') ?? `${out.replace(/\.json$/i, '')}.html`;
  const quiet = get('quiet');

  const options: Options = {
    url: parseUrl('url', get('url') ?? 'http://127.0.0.1:3000'),
    clients,
    conversations,
    groupSize,
    devicesPerUser,
    rate: rate('rate', 100),
    arrival: parseChoice('arrival', get('arrival') ?? 'poisson', ['poisson', 'uniform'] as const),
    durationMs,
    ramp,
    transport: parseChoice('transport', get('transport') ?? 'websocket', ['websocket', 'polling', 'mixed'] as const),
    placement: parseChoice('placement', get('placement') ?? 'random', ['random', 'conversation', 'one'] as const),
    churn: rate('churn', clients / 200),
    offlineMs: parseDurationRange('offline', get('offline') ?? '500ms..3s'),
    typing: num('typing', 0.2, { min: 0, max: 10 }),
    receipts: parseChoice('receipts', get('receipts') ?? 'read', ['none', 'delivered', 'read'] as const),
    readRatio: num('read-ratio', 0.5, { min: 0, max: 1 }),
    presence: rate('presence', clients / 60),
    bodySize: num('body-size', 80, { min: 40, max: 4000, integer: true }),
    workers: num('workers', Math.max(1, availableParallelism() - 1), { min: 1, max: 64, integer: true }),
    graceMs: duration('grace', 5000),
    ackTimeoutMs: duration('ack-timeout', 10_000),
    setupTimeoutMs: duration('setup-timeout', 120_000 + Math.ceil((clients / ramp) * 1000)),
    tokenTtlSeconds: Math.ceil(duration('token-ttl', durationMs + 3_600_000) / 1000),
    jwtSecret: str('jwt-secret') ?? env['LOADGEN_JWT_SECRET'] ?? null,
    jwtIssuer: str('jwt-issuer'),
    jwtAudience: str('jwt-audience'),
    runId,
    seed,
    out,
    html,
    quiet: quiet === true || quiet === 'true',
    recordAcked: false,
  };
  if (options.ackTimeoutMs < 100) throw new UsageError('--ack-timeout: expected at least 100ms');
  if (options.tokenTtlSeconds > 30 * 24 * 3600 && options.jwtSecret === null) throw new UsageError('--token-ttl: the dev token endpoint mints at most 30 days');

  // The plan must be possible: enough users for the largest group, and distinct pairs for direct ones.
  const minUsers = Math.ceil(clients / devicesPerUser.max);
  if (minUsers < groupSize.max) {
    throw new UsageError(
      `--group-size ${groupSize.min}..${groupSize.max} needs at least ${groupSize.max} users, but --clients ${clients} with --devices-per-user up to ${devicesPerUser.max} may give only ${minUsers}`,
    );
  }
  if (groupSize.max === 2 && conversations > (minUsers * (minUsers - 1)) / 2) {
    throw new UsageError(`--conversations ${conversations}: at most ${(minUsers * (minUsers - 1)) / 2} distinct direct conversations between ${minUsers} users`);
  }
  if (options.workers > clients) options.workers = clients;
  return options;
}

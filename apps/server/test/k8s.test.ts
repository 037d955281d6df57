// Kubernetes manifests (infra/k8s/*.yaml), checked offline:
//   1. schema: every object against the Kubernetes API's OpenAPI schemas (kubernetes-models'
//      validators: types, required fields), plus unknown fields (a typo such as `readinesProbe` is
//      valid JSON Schema there, but `kubectl apply` rejects it): the objects are type-checked with
//      TypeScript against kubernetes-models' interfaces, whose excess-property check finds them;
//   2. consistency with the app: probe paths and ports are the node's real routes and PORT, the env
//      the manifests set is exactly what apps/server/src/config.ts reads and loadConfig accepts, the
//      shutdown timeline fits the grace period, the Ingress hashes on the parameter the SDK sends, the
//      HPA, Service, PodDisruptionBudget and Job point at the right things;
//   3. every check can fail: a table of broken manifests, each of which the named check must catch.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify from 'fastify';
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IHorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import type { IJob } from 'kubernetes-models/batch/v1/Job';
import { Job } from 'kubernetes-models/batch/v1/Job';
import type { IIngress } from 'kubernetes-models/networking.k8s.io/v1/Ingress';
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1/Ingress';
import type { IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { IIoK8sApiCoreV1Container as Container } from 'kubernetes-models/v1/Container';
import type { IIoK8sApiCoreV1PodSpec as PodSpec } from 'kubernetes-models/v1/PodSpec';
import type { IIoK8sApiCoreV1Probe as Probe } from 'kubernetes-models/v1/Probe';
import type { ISecret } from 'kubernetes-models/v1/Secret';
import { Secret } from 'kubernetes-models/v1/Secret';
import type { IService } from 'kubernetes-models/v1/Service';
import { Service } from 'kubernetes-models/v1/Service';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { CONFIG_VARIABLES, loadConfig, type Config } from '../src/config.ts';
import { ConfigError } from '../src/config-errors.ts';
import { Lifecycle } from '../src/plugins/lifecycle.ts';
import { Metrics } from '../src/plugins/metrics.ts';
import { healthRoutes } from '../src/transport/http/health.ts';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const K8S_DIR = join(ROOT, 'infra/k8s');
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');

// ── Loading ──────────────────────────────────────────────────────────────────────────────────────

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}
interface Manifest {
  /** file#document, for messages */
  where: string;
  object: K8sObject;
}

function loadManifests(): Manifest[] {
  const files = readdirSync(K8S_DIR)
    .filter((name) => name.endsWith('.yaml') || name.endsWith('.yml'))
    .sort();
  const manifests: Manifest[] = [];
  for (const file of files) {
    const documents = parseAllDocuments(readFileSync(join(K8S_DIR, file), 'utf8'));
    documents.forEach((document, index) => {
      if (document.errors.length > 0) throw new Error(`${file}#${index}: ${document.errors.map((e) => e.message).join('; ')}`);
      const object = document.toJS() as unknown;
      if (object === null || object === undefined) return; // a comment-only document
      manifests.push({ where: `${file}#${index}`, object: object as K8sObject });
    });
  }
  return manifests;
}

// ── Schema validation ────────────────────────────────────────────────────────────────────────────

/** apiVersion/kind → the kubernetes-models class (runtime validator) and its module (TS interface `I<Kind>`). */
const MODELS: Record<string, { model: new (data: never) => { validate(): void }; module: string }> = {
  'v1/ConfigMap': { model: ConfigMap, module: 'kubernetes-models/v1/ConfigMap' },
  'v1/Secret': { model: Secret, module: 'kubernetes-models/v1/Secret' },
  'v1/Service': { model: Service, module: 'kubernetes-models/v1/Service' },
  'apps/v1/Deployment': { model: Deployment, module: 'kubernetes-models/apps/v1/Deployment' },
  'batch/v1/Job': { model: Job, module: 'kubernetes-models/batch/v1/Job' },
  'networking.k8s.io/v1/Ingress': { model: Ingress, module: 'kubernetes-models/networking.k8s.io/v1/Ingress' },
  'autoscaling/v2/HorizontalPodAutoscaler': { model: HorizontalPodAutoscaler, module: 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler' },
  'policy/v1/PodDisruptionBudget': { model: PodDisruptionBudget, module: 'kubernetes-models/policy/v1/PodDisruptionBudget' },
};
const modelKey = (object: K8sObject): string => `${object.apiVersion}/${object.kind}`;

function schemaProblems(manifests: Manifest[]): string[] {
  const problems: string[] = [];
  for (const { where, object } of manifests) {
    const entry = MODELS[modelKey(object)];
    if (!entry) {
      problems.push(`${where}: no schema known for ${modelKey(object)} (add it to MODELS)`);
      continue;
    }
    try {
      new entry.model(object as never).validate();
    } catch (error) {
      problems.push(`${where} (${object.kind}): ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  return problems;
}

/**
 * Unknown fields: the OpenAPI schemas allow additional properties, the API server does not (kubectl's
 * field validation is strict). Each object becomes `const m<i>: I<Kind> = <the object as JSON>;` in a
 * virtual TypeScript file next to the manifests, and TypeScript's excess-property check reports any
 * field the Kubernetes type does not have, at any depth. Library files are parsed once and reused.
 */
const tsOptions: ts.CompilerOptions = {
  strict: true,
  noEmit: true,
  skipLibCheck: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  lib: ['lib.es2022.d.ts'],
  types: [],
};
const tsSourceCache = new Map<string, ts.SourceFile | undefined>();
let tsOldProgram: ts.Program | undefined;

function unknownFieldProblems(manifests: Manifest[]): string[] {
  const virtualFile = join(K8S_DIR, '__manifests__.ts');
  const typed = manifests.filter(({ object }) => MODELS[modelKey(object)]);
  const source = typed.map(({ object }, i) => `export const m${i}: import(${JSON.stringify(MODELS[modelKey(object)]!.module)}).I${object.kind} = ${JSON.stringify(object)};`).join('\n');
  const host = ts.createCompilerHost(tsOptions);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (fileName, languageVersion, onError, shouldCreate) => {
    if (fileName === virtualFile) return ts.createSourceFile(fileName, source, languageVersion, true);
    if (!tsSourceCache.has(fileName)) tsSourceCache.set(fileName, getSourceFile(fileName, languageVersion, onError, shouldCreate));
    return tsSourceCache.get(fileName);
  };
  const fileExists = host.fileExists.bind(host);
  const readFile = host.readFile.bind(host);
  host.fileExists = (fileName) => fileName === virtualFile || fileExists(fileName);
  host.readFile = (fileName) => (fileName === virtualFile ? source : readFile(fileName));
  const program = ts.createProgram([virtualFile], tsOptions, host, tsOldProgram);
  tsOldProgram = program;
  const sourceFile = program.getSourceFile(virtualFile)!;
  return ts.getPreEmitDiagnostics(program, sourceFile).map((diagnostic) => {
    const line = diagnostic.start === undefined ? -1 : sourceFile.getLineAndCharacterOfPosition(diagnostic.start).line;
    const where = typed[line]?.where ?? 'generated file';
    return `${where}: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, ' ')}`;
  });
}

// ── What the app knows ───────────────────────────────────────────────────────────────────────────

/** Every environment variable the node reads (its config schema's keys). */
const KNOWN_VARIABLES = new Set<string>(CONFIG_VARIABLES);

/** Stand-ins for the Secret's values: what an operator would put there (the template's are invalid on purpose). */
const TEST_SECRETS: Record<string, string> = {
  JWT_SECRET: 'k8s-test-secret-0123456789-0123456789-abcdef',
  DATABASE_URL: 'postgresql://chat:password@postgres.example:5432/chat',
  REDIS_URL: 'redis://redis.example:6379',
  // One Redis: the cluster seeds stay empty (unset), as in the template.
  REDIS_CLUSTER_NODES: '',
};

/** The query parameter the SDK sends on every Socket.IO request, and the one nginx.conf hashes on. */
const SDK_STICKY_PARAMETER = /query:\s*\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*:/.exec(read('packages/client/src/connection.ts'))?.[1];
const NGINX_STICKY_PARAMETER = /map \$arg_([A-Za-z0-9_]+) \$sticky_key/.exec(read('nginx.conf'))?.[1];
/** Socket.IO's path on the node. */
const SOCKET_IO_PATH = /path:\s*'([^']+)'/.exec(read('apps/server/src/plugins/realtime.ts'))?.[1];

// ── Context: the objects and the values derived from them ────────────────────────────────────────

class Ctx {
  readonly manifests: Manifest[];
  constructor(manifests: Manifest[]) {
    this.manifests = manifests;
  }

  one<T>(kind: string): T {
    const found = this.manifests.filter(({ object }) => object.kind === kind);
    if (found.length !== 1) throw new Error(`expected exactly one ${kind}, found ${found.length}`);
    return found[0]!.object as T;
  }
  get configMap(): IConfigMap {
    return this.one('ConfigMap');
  }
  get secret(): ISecret {
    return this.one('Secret');
  }
  get deployment(): IDeployment {
    return this.one('Deployment');
  }
  get job(): IJob {
    return this.one('Job');
  }
  get service(): IService {
    return this.one('Service');
  }
  get ingress(): IIngress {
    return this.one('Ingress');
  }
  get hpa(): IHorizontalPodAutoscaler {
    return this.one('HorizontalPodAutoscaler');
  }
  get pdb(): IPodDisruptionBudget {
    return this.one('PodDisruptionBudget');
  }

  get serverPod(): PodSpec {
    return need(this.deployment.spec?.template.spec, 'Deployment spec.template.spec');
  }
  get server(): Container {
    const containers = this.serverPod.containers;
    if (containers.length !== 1) throw new Error(`the Deployment should run one container, found ${containers.length}`);
    return containers[0]!;
  }
  get jobPod(): PodSpec {
    return need(this.job.spec?.template.spec, 'Job spec.template.spec');
  }
  get migrator(): Container {
    const containers = this.jobPod.containers;
    if (containers.length !== 1) throw new Error(`the Job should run one container, found ${containers.length}`);
    return containers[0]!;
  }
  get serverLabels(): Record<string, string> {
    return this.deployment.spec?.template.metadata?.labels ?? {};
  }
  get jobLabels(): Record<string, string> {
    return this.job.spec?.template.metadata?.labels ?? {};
  }

  /** Secret keys as the template has them (stringData or base64 data). */
  get secretData(): Record<string, string> {
    const decoded = Object.fromEntries(Object.entries(this.secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
    return { ...decoded, ...(this.secret.stringData ?? {}) };
  }

  /**
   * A container's environment as the kubelet builds it: envFrom first, then env (which wins). Secret
   * references must name the Secret and one of its keys; their values come from `secrets`.
   */
  environment(container: Container, podName: string, secrets: Record<string, string>): Record<string, string> {
    const env: Record<string, string> = {};
    for (const from of container.envFrom ?? []) {
      if (from.prefix) throw new Error(`${container.name}: envFrom prefix "${from.prefix}" would rename the variables`);
      if (from.configMapRef) {
        if (from.configMapRef.name !== this.configMap.metadata?.name)
          throw new Error(`${container.name}: envFrom names ConfigMap "${from.configMapRef.name}", the manifests define "${this.configMap.metadata?.name}"`);
        Object.assign(env, this.configMap.data ?? {});
      }
      if (from.secretRef) {
        if (from.secretRef.name !== this.secret.metadata?.name)
          throw new Error(`${container.name}: envFrom names Secret "${from.secretRef.name}", the manifests define "${this.secret.metadata?.name}"`);
        for (const key of Object.keys(this.secretData)) env[key] = need(secrets[key], `a test value for secret key ${key}`);
      }
    }
    for (const variable of container.env ?? []) {
      const source = variable.valueFrom;
      if (source?.secretKeyRef) {
        const { name, key } = source.secretKeyRef;
        if (name !== this.secret.metadata?.name) throw new Error(`${container.name}: ${variable.name} reads Secret "${name}", the manifests define "${this.secret.metadata?.name}"`);
        if (!(key in this.secretData)) throw new Error(`${container.name}: ${variable.name} reads key "${key}", which the Secret template does not have`);
        env[variable.name] = need(secrets[key], `a test value for secret key ${key}`);
      } else if (source?.configMapKeyRef) {
        const { name, key } = source.configMapKeyRef;
        const value = this.configMap.data?.[key];
        if (name !== this.configMap.metadata?.name || value === undefined) throw new Error(`${container.name}: ${variable.name} reads ConfigMap "${name}" key "${key}", which does not exist`);
        env[variable.name] = value;
      } else if (source?.fieldRef) {
        if (source.fieldRef.fieldPath !== 'metadata.name') throw new Error(`${container.name}: ${variable.name} reads ${source.fieldRef.fieldPath}; only metadata.name is modelled here`);
        env[variable.name] = podName;
      } else if (source) {
        throw new Error(`${container.name}: ${variable.name} uses an unsupported valueFrom`);
      } else {
        env[variable.name] = variable.value ?? '';
      }
    }
    return env;
  }

  /** A pod name as a Deployment generates it (<deployment>-<template hash>-<5 characters>). */
  get podName(): string {
    return `${this.deployment.metadata?.name ?? 'x'}-7d9f8c6b5d-x2x4q`;
  }
  get serverEnv(): Record<string, string> {
    return this.environment(this.server, this.podName, TEST_SECRETS);
  }
  /** The node's configuration in a pod: loadConfig on the container's environment. */
  get config(): Config {
    return loadConfig(this.serverEnv);
  }

  containerPort(container: Container, port: number | string | undefined): number {
    if (typeof port === 'number') return port;
    const named = container.ports?.find((p) => p.name === port);
    if (!named) throw new Error(`${container.name}: no container port named "${String(port)}"`);
    return named.containerPort;
  }
}

function need<T>(value: T | undefined | null, what: string): T {
  if (value === undefined || value === null) throw new Error(`missing: ${what}`);
  return value;
}
const matches = (selector: Record<string, string> | undefined, labels: Record<string, string>): boolean =>
  !!selector && Object.keys(selector).length > 0 && Object.entries(selector).every(([key, value]) => labels[key] === value);
/** Ingress pathType Prefix semantics: whole path elements. */
const prefixCovers = (prefix: string, url: string): boolean => {
  const base = prefix.replace(/\/+$/, '');
  return base === '' || url === base || url.startsWith(`${base}/`);
};
/** The seconds a preStop hook waits: `sleep N` (exec, directly or through a shell) or the sleep action. */
function preStopSeconds(container: Container): number {
  const preStop = container.lifecycle?.preStop;
  if (preStop?.sleep) return preStop.sleep.seconds;
  const command = (preStop?.exec?.command ?? []).join(' ');
  const seconds = /(?:^|\s|\/)sleep\s+(\d+(?:\.\d+)?)\b/.exec(command)?.[1];
  if (seconds === undefined) throw new Error(`${container.name}: preStop must sleep (exec ["sleep", "N"] or sleep.seconds), found ${JSON.stringify(preStop ?? null)}`);
  return Number(seconds);
}
const intOrPercent = (value: number | string | undefined): number | undefined => (value === undefined ? undefined : typeof value === 'number' ? value : Number(value.replace(/%$/, '')));
/** The runAsNonRoot/runAsUser a container ends up with (container level over pod level). */
function effectiveSecurity(pod: PodSpec, container: Container): { runAsNonRoot?: boolean; runAsUser?: number } {
  return {
    runAsNonRoot: container.securityContext?.runAsNonRoot ?? pod.securityContext?.runAsNonRoot,
    runAsUser: container.securityContext?.runAsUser ?? pod.securityContext?.runAsUser,
  };
}

// ── The checks: each returns problems (an empty list passes); a thrown error is a problem too ─────

type Check = (ctx: Ctx) => string[];

const CHECKS: Record<string, Check> = {
  /** One object of each kind; nothing pins a namespace; names and the app label are set. */
  inventory: (ctx) => {
    const problems: string[] = [];
    const kinds = ctx.manifests.map(({ object }) => object.kind).sort();
    const expected = ['ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'Ingress', 'Job', 'PodDisruptionBudget', 'Secret', 'Service'];
    if (JSON.stringify(kinds) !== JSON.stringify(expected)) problems.push(`kinds ${kinds.join(', ')}; expected ${expected.join(', ')}`);
    for (const { where, object } of ctx.manifests) {
      if (object.metadata?.namespace !== undefined) problems.push(`${where}: metadata.namespace is set; the manifests are namespace-agnostic (kubectl -n)`);
      if (!object.metadata?.name) problems.push(`${where}: metadata.name is missing`);
      if (object.metadata?.labels?.['app.kubernetes.io/name'] !== 'chat-server') problems.push(`${where}: label app.kubernetes.io/name=chat-server is missing`);
    }
    return problems;
  },

  schema: (ctx) => schemaProblems(ctx.manifests),

  unknownFields: (ctx) => unknownFieldProblems(ctx.manifests),

  /** Every variable the manifests set is one config.ts reads; loadConfig accepts the pod's environment. */
  environment: (ctx) => {
    const problems: string[] = [];
    const set = new Map<string, string>();
    for (const key of Object.keys(ctx.configMap.data ?? {})) set.set(key, 'ConfigMap');
    for (const key of Object.keys(ctx.secretData)) set.set(key, 'Secret');
    for (const [owner, container] of [
      ['Deployment', ctx.server],
      ['Job', ctx.migrator],
    ] as const) {
      for (const variable of container.env ?? []) set.set(variable.name, `${owner} container ${container.name}`);
    }
    for (const [name, where] of set) {
      if (!KNOWN_VARIABLES.has(name)) problems.push(`${where} sets ${name}, which apps/server/src/config.ts does not read`);
    }
    try {
      const config = ctx.config;
      if (config.env !== 'production') problems.push(`NODE_ENV is ${config.env}, expected production`);
      if (config.database.kind !== 'postgres') problems.push('no DATABASE_URL: the node would run embedded PGlite and write to its filesystem');
      if (!config.redis) problems.push('no REDIS_URL or REDIS_CLUSTER_NODES: the node would run single-node in-memory state');
      if (config.devTokens.enabled) problems.push('DEV_TOKENS is on');
      if (config.nodeId !== ctx.podName) problems.push(`NODE_ID is "${config.nodeId}", expected the pod name "${ctx.podName}" (downward API metadata.name)`);
    } catch (error) {
      problems.push(`loadConfig refuses the pod's environment: ${error instanceof Error ? error.message : String(error)}`);
    }
    // The longest name a Deployment's pod can get (63 characters) must be a valid NODE_ID too.
    const longest = `${'a'.repeat(47)}-7d9f8c6b5d-x2x4q`;
    try {
      loadConfig({ ...ctx.serverEnv, NODE_ID: longest });
    } catch (error) {
      problems.push(`a 63-character pod name is not a valid NODE_ID: ${error instanceof Error ? error.message : String(error)}`);
    }
    return problems;
  },

  /** The template's own placeholders are marked and fail closed: an unedited Secret cannot run. */
  secretTemplate: (ctx) => {
    const problems: string[] = [];
    const data = ctx.secretData;
    for (const key of ['JWT_SECRET', 'DATABASE_URL', 'REDIS_URL']) {
      if (!(key in data)) problems.push(`the Secret template lacks ${key}`);
      else if (!data[key]!.includes('REPLACE_ME')) problems.push(`the Secret template's ${key} is not a marked placeholder (REPLACE_ME)`);
    }
    try {
      loadConfig(ctx.environment(ctx.server, ctx.podName, data));
      problems.push('loadConfig accepts the unedited Secret template: a forgotten edit would run with a public secret');
    } catch (error) {
      if (!(error instanceof ConfigError) || !error.message.includes('JWT_SECRET')) problems.push(`the template should fail on JWT_SECRET, got: ${String(error)}`);
    }
    const used = new Set([...(ctx.server.env ?? []), ...(ctx.migrator.env ?? [])].flatMap((v) => (v.valueFrom?.secretKeyRef ? [v.valueFrom.secretKeyRef.key] : [])));
    for (const key of Object.keys(data)) if (!used.has(key)) problems.push(`Secret key ${key} is used by no container`);
    return problems;
  },

  /** Probes hit the node's real routes on the port it listens on (PORT). */
  probes: (ctx) => {
    const problems: string[] = [];
    const config = ctx.config;
    const server = ctx.server;
    const http = server.ports?.find((p) => p.name === 'http');
    if (http?.containerPort !== config.port) problems.push(`containerPort "http" is ${http?.containerPort}, the node listens on PORT=${config.port}`);
    const expectations: Array<[string, Probe | undefined, string]> = [
      ['readinessProbe', server.readinessProbe, '/readyz'],
      ['livenessProbe', server.livenessProbe, '/healthz'],
      ['startupProbe', server.startupProbe, '/healthz'],
    ];
    for (const [name, probe, path] of expectations) {
      if (!probe?.httpGet) {
        problems.push(`${name}: missing or not httpGet`);
        continue;
      }
      if (probe.httpGet.path !== path) problems.push(`${name}: path ${probe.httpGet.path}, expected ${path}`);
      const port = ctx.containerPort(server, probe.httpGet.port);
      if (port !== config.port) problems.push(`${name}: port ${String(probe.httpGet.port)} is ${port}, the node listens on ${config.port}`);
      if ((probe.timeoutSeconds ?? 1) < 2) problems.push(`${name}: timeoutSeconds ${probe.timeoutSeconds ?? 1} (< 2 s: a GC pause or the 1 s dependency check would fail it)`);
    }
    const liveness = server.livenessProbe;
    if (liveness && (liveness.periodSeconds ?? 10) * (liveness.failureThreshold ?? 3) < 20) problems.push('livenessProbe restarts after less than 20 s without answers');
    const startup = server.startupProbe;
    // The image runs compiled JavaScript, ready within a few seconds (README "Start-up time"): a window
    // well above that, but not so long that a stuck start holds a rollout for a minute or more.
    const window = startup ? (startup.periodSeconds ?? 10) * (startup.failureThreshold ?? 3) : 0;
    if (startup && window < 10) problems.push(`startupProbe allows ${window} s to start, less than 10 s`);
    if (startup && window > 45) problems.push(`startupProbe allows ${window} s to start: the compiled server needs a few`);
    return problems;
  },

  /** preStop sleep, then SIGTERM's drain within SHUTDOWN_TIMEOUT_MS, all before the kubelet's SIGKILL. */
  shutdown: (ctx) => {
    const problems: string[] = [];
    const config = ctx.config;
    const sleep = preStopSeconds(ctx.server);
    const grace = need(ctx.serverPod.terminationGracePeriodSeconds, 'Deployment terminationGracePeriodSeconds (explicit, it is part of the drain timeline)');
    if (sleep < 2) problems.push(`preStop sleeps ${sleep} s; endpoints need a few seconds to drop the pod`);
    if (!(grace > sleep + config.shutdown.timeoutMs / 1000)) {
      problems.push(`terminationGracePeriodSeconds ${grace} must exceed preStop ${sleep} s + SHUTDOWN_TIMEOUT_MS ${config.shutdown.timeoutMs / 1000} s`);
    }
    if (!ctx.serverEnv.DRAIN_DELAY_MS) problems.push('DRAIN_DELAY_MS is not set');
    if (config.shutdown.drainDelayMs + 2000 > config.shutdown.timeoutMs) {
      problems.push(`DRAIN_DELAY_MS ${config.shutdown.drainDelayMs} leaves under 2 s of SHUTDOWN_TIMEOUT_MS ${config.shutdown.timeoutMs} to finish writes and close sockets`);
    }
    return problems;
  },

  /** Zero-downtime rollouts, the replica count, resources the HPA can measure, Prometheus annotations. */
  deployment: (ctx) => {
    const problems: string[] = [];
    const { deployment, server, config } = ctx;
    const spec = need(deployment.spec, 'Deployment spec');
    if ((spec.replicas ?? 1) < 3) problems.push(`replicas ${spec.replicas ?? 1}, expected at least 3`);
    if (!matches(spec.selector.matchLabels, ctx.serverLabels)) problems.push('the Deployment selector does not match its pod template labels');
    if (matches(spec.selector.matchLabels, ctx.jobLabels)) problems.push("the Deployment selector matches the migration Job's pods");
    const rolling = spec.strategy?.rollingUpdate;
    if (spec.strategy?.type !== 'RollingUpdate' || intOrPercent(rolling?.maxUnavailable) !== 0 || !((intOrPercent(rolling?.maxSurge) ?? 0) > 0)) {
      problems.push(`rollout ${JSON.stringify(spec.strategy)}: expected RollingUpdate with maxUnavailable 0 and maxSurge > 0`);
    }
    const requests = server.resources?.requests ?? {};
    const limits = server.resources?.limits ?? {};
    if (requests.cpu === undefined || requests.memory === undefined) problems.push('container requests must set cpu (the HPA measures against it) and memory');
    if (limits.memory === undefined) problems.push('container limits must set memory');
    const annotations = spec.template.metadata?.annotations ?? {};
    if (annotations['prometheus.io/scrape'] !== 'true') problems.push('prometheus.io/scrape is not "true"');
    if (annotations['prometheus.io/path'] !== '/metrics') problems.push(`prometheus.io/path is ${annotations['prometheus.io/path']}, expected /metrics`);
    if (Number(annotations['prometheus.io/port']) !== config.port) problems.push(`prometheus.io/port is ${annotations['prometheus.io/port']}, the node listens on ${config.port}`);
    return problems;
  },

  /** Non-root, read-only root filesystem, no privilege escalation (both workloads). */
  security: (ctx) => {
    const problems: string[] = [];
    for (const [owner, pod, container] of [
      ['Deployment', ctx.serverPod, ctx.server],
      ['Job', ctx.jobPod, ctx.migrator],
    ] as const) {
      const { runAsNonRoot, runAsUser } = effectiveSecurity(pod, container);
      if (runAsNonRoot !== true) problems.push(`${owner}: runAsNonRoot is not true`);
      if (!(typeof runAsUser === 'number' && runAsUser > 0)) problems.push(`${owner}: runAsUser must be a non-zero uid (the image's USER is a name the kubelet cannot verify)`);
      if (container.securityContext?.readOnlyRootFilesystem !== true) problems.push(`${owner}: readOnlyRootFilesystem is not true`);
      if (container.securityContext?.allowPrivilegeEscalation !== false) problems.push(`${owner}: allowPrivilegeEscalation is not false`);
      // The compiled image writes nothing at run time: a command that needs tsx or npm would.
      const command = [...(container.command ?? []), ...(container.args ?? [])].join(' ');
      if (/\btsx\b|\bnpm\b/.test(command)) problems.push(`${owner}: runs "${command}"; the image runs compiled JavaScript with node`);
    }
    return problems;
  },

  /** Migrations run once per deploy in the Job, from the same image, never in the Deployment's pods. */
  migrations: (ctx) => {
    const problems: string[] = [];
    const script = (JSON.parse(read('package.json')) as { scripts?: Record<string, string> }).scripts?.['db:migrate'];
    if (!script) problems.push('package.json has no db:migrate script');
    const command = [...(ctx.migrator.command ?? []), ...(ctx.migrator.args ?? [])].join(' ');
    const expected = 'node apps/server/dist/db/migrate-cli.js deploy';
    if (command !== expected) problems.push(`the Job runs "${command}", expected "${expected}" (the compiled migrate CLI)`);
    if (ctx.migrator.image !== ctx.server.image) problems.push(`the Job's image ${ctx.migrator.image} differs from the Deployment's ${ctx.server.image}`);
    if (!['Never', 'OnFailure'].includes(ctx.jobPod.restartPolicy ?? '')) problems.push(`Job restartPolicy ${ctx.jobPod.restartPolicy}`);
    if (ctx.job.spec?.backoffLimit === undefined || ctx.job.spec.backoffLimit > 5) problems.push('Job backoffLimit should be set and small');
    if (!ctx.job.spec?.activeDeadlineSeconds) problems.push('Job activeDeadlineSeconds is not set (kubectl wait would hang on a stuck migration)');
    const migrateEnv = ctx.environment(ctx.migrator, 'chat-server-migrate-x2x4q', TEST_SECRETS);
    if (!/^postgres(ql)?:\/\//.test(migrateEnv.DATABASE_URL ?? '')) problems.push('the Job has no DATABASE_URL');
    for (const container of [...(ctx.serverPod.initContainers ?? []), ...ctx.serverPod.containers]) {
      if ([...(container.command ?? []), ...(container.args ?? [])].join(' ').includes('migrate'))
        problems.push(`Deployment container ${container.name} runs migrations: that is every replica, every start`);
    }
    return problems;
  },

  /** The Service selects the Deployment's pods (and not the Job's) and reaches the node's port. */
  service: (ctx) => {
    const problems: string[] = [];
    const spec = need(ctx.service.spec, 'Service spec');
    if ((spec.type ?? 'ClusterIP') !== 'ClusterIP') problems.push(`Service type ${spec.type}, expected ClusterIP`);
    if (!matches(spec.selector, ctx.serverLabels)) problems.push("the Service selector does not match the Deployment's pods");
    if (matches(spec.selector, ctx.jobLabels)) problems.push("the Service selector matches the migration Job's pods");
    for (const port of spec.ports ?? []) {
      const target = ctx.containerPort(ctx.server, port.targetPort ?? port.port);
      if (target !== ctx.config.port) problems.push(`Service port ${port.name ?? port.port} targets ${target}, the node listens on ${ctx.config.port}`);
    }
    if ((spec.ports ?? []).length === 0) problems.push('the Service has no ports');
    return problems;
  },

  /** Hash on the SDK's sticky parameter, timeouts above the heartbeat, only the public API routed. */
  ingress: (ctx) => {
    const problems: string[] = [];
    const annotations = ctx.ingress.metadata?.annotations ?? {};
    const config = ctx.config;
    if (!SDK_STICKY_PARAMETER || SDK_STICKY_PARAMETER !== NGINX_STICKY_PARAMETER) problems.push(`SDK sends "${SDK_STICKY_PARAMETER}", nginx.conf hashes on "${NGINX_STICKY_PARAMETER}"`);
    const hash = annotations['nginx.ingress.kubernetes.io/upstream-hash-by'];
    if (hash !== `$arg_${SDK_STICKY_PARAMETER}`) problems.push(`upstream-hash-by is ${JSON.stringify(hash)}, expected "$arg_${SDK_STICKY_PARAMETER}" (the SDK's per-session parameter)`);
    const heartbeat = (config.socket.pingIntervalMs + config.socket.pingTimeoutMs) / 1000;
    for (const name of ['proxy-read-timeout', 'proxy-send-timeout']) {
      const value = Number(annotations[`nginx.ingress.kubernetes.io/${name}`]);
      if (!(value >= 75 && value > heartbeat)) problems.push(`${name} is ${annotations[`nginx.ingress.kubernetes.io/${name}`]}; needs >= 75 s and above ping interval + timeout (${heartbeat} s)`);
    }
    if (annotations['nginx.ingress.kubernetes.io/affinity'] !== undefined) problems.push('cookie affinity would override upstream-hash-by');
    if (annotations['nginx.ingress.kubernetes.io/service-upstream'] === 'true') problems.push('service-upstream disables the hashing (kube-proxy picks the pod)');
    const spec = need(ctx.ingress.spec, 'Ingress spec');
    const paths = (spec.rules ?? []).flatMap((rule) => rule.http?.paths ?? []);
    const servicePorts = ctx.service.spec?.ports ?? [];
    for (const path of paths) {
      const backend = path.backend.service;
      if (backend?.name !== ctx.service.metadata?.name) problems.push(`path ${path.path} goes to service ${backend?.name}, not ${ctx.service.metadata?.name}`);
      if (!servicePorts.some((port) => (backend?.port?.name !== undefined ? port.name === backend.port.name : port.port === backend?.port?.number))) {
        problems.push(`path ${path.path}: service port ${JSON.stringify(backend?.port)} does not exist`);
      }
      if (path.pathType !== 'Prefix') problems.push(`path ${path.path}: pathType ${path.pathType}, expected Prefix`);
    }
    const covered = (url: string): boolean => paths.some((p) => p.path !== undefined && prefixCovers(p.path, url));
    for (const url of [SOCKET_IO_PATH ?? '/socket.io/', '/v1/conversations']) {
      if (!covered(url)) problems.push(`no Ingress path routes ${url}`);
    }
    for (const url of ['/metrics', '/readyz', '/healthz']) if (covered(url)) problems.push(`the Ingress exposes ${url} publicly`);
    return problems;
  },

  /** The HPA scales this Deployment on CPU, from at least 3 replicas, and scales down slowly. */
  hpa: (ctx) => {
    const problems: string[] = [];
    const spec = need(ctx.hpa.spec, 'HPA spec');
    const target = spec.scaleTargetRef;
    if (target.kind !== 'Deployment' || target.apiVersion !== ctx.deployment.apiVersion || target.name !== ctx.deployment.metadata?.name) {
      problems.push(`the HPA targets ${target.apiVersion}/${target.kind}/${target.name}, not the Deployment ${ctx.deployment.metadata?.name}`);
    }
    const min = spec.minReplicas ?? 1;
    const replicas = ctx.deployment.spec?.replicas ?? 1;
    if (min < 3) problems.push(`minReplicas ${min}, expected at least 3`);
    if (!(min <= replicas && replicas <= spec.maxReplicas)) problems.push(`Deployment replicas ${replicas} outside the HPA's ${min}..${spec.maxReplicas}`);
    const cpu = (spec.metrics ?? []).find((m) => m.type === 'Resource' && m.resource?.name === 'cpu');
    if (cpu?.resource?.target.type !== 'Utilization' || !cpu.resource.target.averageUtilization) problems.push('no CPU utilisation target');
    if (ctx.server.resources?.requests?.cpu === undefined) problems.push('CPU utilisation needs a CPU request on the container');
    const window = spec.behavior?.scaleDown?.stabilizationWindowSeconds;
    if (window === undefined || window < 300) problems.push(`scaleDown stabilizationWindowSeconds ${window}; at least 300 (scaling down disconnects sockets)`);
    // PostgreSQL connections at full scale must be what the README tells operators to provision.
    const pool = ctx.config.database.kind === 'postgres' ? ctx.config.database.poolSize : 0;
    const documented = Number(/max_connections[^0-9]{0,40}(\d+)/.exec(read('infra/k8s/README.md'))?.[1] ?? NaN);
    // The migrator holds up to 3: its lock session and two for the schema engine.
    if (!(spec.maxReplicas * pool + 3 <= documented))
      problems.push(`maxReplicas ${spec.maxReplicas} x DATABASE_POOL_SIZE ${pool} (+3 for the Job) exceeds the max_connections infra/k8s/README.md asks for (${documented})`);
    return problems;
  },

  /** The PodDisruptionBudget covers the Deployment's pods only and still lets a node drain. */
  pdb: (ctx) => {
    const problems: string[] = [];
    const spec = need(ctx.pdb.spec, 'PodDisruptionBudget spec');
    if (!matches(spec.selector?.matchLabels, ctx.serverLabels)) problems.push("the PodDisruptionBudget does not select the Deployment's pods");
    if (matches(spec.selector?.matchLabels, ctx.jobLabels)) problems.push("the PodDisruptionBudget selects the migration Job's pods");
    const min = ctx.hpa.spec?.minReplicas ?? 1;
    const allowed = spec.maxUnavailable !== undefined ? intOrPercent(spec.maxUnavailable)! : min - (intOrPercent(spec.minAvailable) ?? min);
    if (!(allowed >= 1)) problems.push(`the budget allows ${allowed} disruptions at ${min} replicas: node drains would block`);
    if (typeof spec.maxUnavailable === 'number' && spec.maxUnavailable >= min) problems.push(`maxUnavailable ${spec.maxUnavailable} could take every pod at ${min} replicas`);
    return problems;
  },
};

function run(check: Check, ctx: Ctx): string[] {
  try {
    return check(ctx);
  } catch (error) {
    return [error instanceof Error ? error.message : String(error)];
  }
}

// ── Tests ────────────────────────────────────────────────────────────────────────────────────────

const MANIFESTS = loadManifests();

describe('infra/k8s manifests', () => {
  it('parse, and what the checks rely on is found in the sources', () => {
    expect(MANIFESTS.length).toBeGreaterThanOrEqual(8);
    for (const name of ['PORT', 'NODE_ID', 'DATABASE_URL', 'REDIS_URL', 'JWT_SECRET', 'SHUTDOWN_TIMEOUT_MS', 'DRAIN_DELAY_MS']) expect(KNOWN_VARIABLES).toContain(name);
    expect(KNOWN_VARIABLES.size).toBeGreaterThan(30);
    expect(SDK_STICKY_PARAMETER).toBe('sticky');
    expect(NGINX_STICKY_PARAMETER).toBe('sticky');
    expect(SOCKET_IO_PATH).toBe('/socket.io/');
  });

  const ctx = new Ctx(MANIFESTS);
  it.each(Object.keys(CHECKS))(
    '%s',
    (name) => {
      expect(run(CHECKS[name]!, ctx)).toEqual([]);
    },
    60_000,
  );

  it("the probe and metrics paths are the node's routes: liveness ignores dependencies, readiness does not", async () => {
    const server = ctx.server;
    const app = Fastify();
    const lifecycle = new Lifecycle();
    app.decorate('nodeId', 'k8s-test');
    app.decorate('lifecycle', lifecycle);
    app.decorate('metrics', new Metrics('k8s-test'));
    await app.register(healthRoutes);
    const get = async (path: string | undefined): Promise<number> => (await app.inject({ method: 'GET', url: need(path, 'probe path') })).statusCode;
    const annotations = ctx.deployment.spec?.template.metadata?.annotations ?? {};
    try {
      expect(await get(server.readinessProbe?.httpGet?.path)).toBe(200);
      expect(await get(server.livenessProbe?.httpGet?.path)).toBe(200);
      expect(await get(server.startupProbe?.httpGet?.path)).toBe(200);
      expect(await get(annotations['prometheus.io/path'])).toBe(200);
      lifecycle.addCheck('database', async () => {
        throw new Error('down');
      });
      expect(await get(server.readinessProbe?.httpGet?.path)).toBe(503);
      expect(await get(server.livenessProbe?.httpGet?.path)).toBe(200);
      expect(await get(server.startupProbe?.httpGet?.path)).toBe(200);
    } finally {
      await app.close();
    }
  });
});

/** Each broken copy of the manifests must be caught by the named check, for the expected reason (so no check passes vacuously). */
// biome-ignore lint/suspicious/noExplicitAny: a mutation reaches anywhere into parsed YAML; the checks re-validate what it produces.
type Loose = any;
type Mutation = [description: string, check: keyof typeof CHECKS, expected: RegExp, mutate: (m: { [kind: string]: Loose }) => void];
const MUTATIONS: Mutation[] = [
  ['readiness probe on /healthz', 'probes', /readinessProbe: path \/healthz/, (m) => (m.Deployment.spec.template.spec.containers[0].readinessProbe.httpGet.path = '/healthz')],
  ['liveness probe on /readyz', 'probes', /livenessProbe: path \/readyz/, (m) => (m.Deployment.spec.template.spec.containers[0].livenessProbe.httpGet.path = '/readyz')],
  ['containerPort differs from PORT', 'probes', /containerPort "http" is 8080/, (m) => (m.Deployment.spec.template.spec.containers[0].ports[0].containerPort = 8080)],
  ['PORT differs from the containerPort', 'probes', /listens on PORT=8080/, (m) => (m.ConfigMap.data.PORT = '8080')],
  ['grace period too short', 'shutdown', /terminationGracePeriodSeconds 15 must exceed/, (m) => (m.Deployment.spec.template.spec.terminationGracePeriodSeconds = 15)],
  ['preStop sleeps too long', 'shutdown', /preStop 25 s/, (m) => (m.Deployment.spec.template.spec.containers[0].lifecycle.preStop.exec.command = ['sleep', '25'])],
  ['no explicit grace period', 'shutdown', /missing: Deployment terminationGracePeriodSeconds/, (m) => delete m.Deployment.spec.template.spec.terminationGracePeriodSeconds],
  ['no preStop hook', 'shutdown', /preStop must sleep/, (m) => delete m.Deployment.spec.template.spec.containers[0].lifecycle],
  ['SHUTDOWN_TIMEOUT_MS above the grace period', 'shutdown', /SHUTDOWN_TIMEOUT_MS 40 s/, (m) => setEnv(m.Deployment, 'SHUTDOWN_TIMEOUT_MS', '40000')],
  ['DRAIN_DELAY_MS as long as the deadline', 'shutdown', /DRAIN_DELAY_MS 10000 leaves/, (m) => setEnv(m.Deployment, 'DRAIN_DELAY_MS', '10000')],
  ['a variable config.ts does not read', 'environment', /sets DRAIN_DELAY, which/, (m) => (m.ConfigMap.data.DRAIN_DELAY = '3000')],
  ['a value loadConfig refuses', 'environment', /LOG_LEVEL: expected one of/, (m) => (m.ConfigMap.data.LOG_LEVEL = 'verbose')],
  ['NODE_ID not from the pod name', 'environment', /NODE_ID is "node-1"/, (m) => setEnv(m.Deployment, 'NODE_ID', 'node-1')],
  [
    'secret key missing from the template',
    'environment',
    /key "JWT_KEY", which the Secret template does not have/,
    (m) => (m.Deployment.spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef.key = 'JWT_KEY'),
  ],
  [
    'no REDIS_URL',
    'environment',
    /no REDIS_URL/,
    (m) => (m.Deployment.spec.template.spec.containers[0].env = m.Deployment.spec.template.spec.containers[0].env.filter((e: Loose) => e.name !== 'REDIS_URL')),
  ],
  ['a usable JWT_SECRET in the template', 'secretTemplate', /accepts the unedited Secret template/, (m) => (m.Secret.stringData.JWT_SECRET = 'REPLACE_ME-with-something-at-least-32-characters')],
  ['hash on the client address', 'ingress', /upstream-hash-by is "\$remote_addr"/, (m) => (m.Ingress.metadata.annotations['nginx.ingress.kubernetes.io/upstream-hash-by'] = '$remote_addr')],
  ['read timeout below the heartbeat', 'ingress', /proxy-read-timeout is 30/, (m) => (m.Ingress.metadata.annotations['nginx.ingress.kubernetes.io/proxy-read-timeout'] = '30')],
  ['Ingress to another service', 'ingress', /goes to service chat,/, (m) => (m.Ingress.spec.rules[0].http.paths[0].backend.service.name = 'chat')],
  [
    'Ingress exposes /metrics',
    'ingress',
    /exposes \/metrics publicly/,
    (m) => m.Ingress.spec.rules[0].http.paths.push({ path: '/', pathType: 'Prefix', backend: m.Ingress.spec.rules[0].http.paths[0].backend }),
  ],
  ['HPA targets another Deployment', 'hpa', /HPA targets apps\/v1\/Deployment\/chat,/, (m) => (m.HorizontalPodAutoscaler.spec.scaleTargetRef.name = 'chat')],
  ['HPA scales down at once', 'hpa', /scaleDown stabilizationWindowSeconds/, (m) => delete m.HorizontalPodAutoscaler.spec.behavior],
  ['more PostgreSQL connections than documented', 'hpa', /maxReplicas 50 x DATABASE_POOL_SIZE/, (m) => (m.HorizontalPodAutoscaler.spec.maxReplicas = 50)],
  ['Service selects the Job too', 'service', /Service selector matches the migration Job/, (m) => delete m.Service.spec.selector['app.kubernetes.io/component']],
  ['Service selects nothing', 'service', /Service selector does not match/, (m) => (m.Service.spec.selector['app.kubernetes.io/component'] = 'web')],
  ['PodDisruptionBudget selects nothing', 'pdb', /does not select the Deployment/, (m) => (m.PodDisruptionBudget.spec.selector.matchLabels['app.kubernetes.io/name'] = 'chat')],
  ['PodDisruptionBudget blocks drains', 'pdb', /allows 0 disruptions/, (m) => (m.PodDisruptionBudget.spec.maxUnavailable = 0)],
  ['Job on another image', 'migrations', /image chat-server:other differs/, (m) => (m.Job.spec.template.spec.containers[0].image = 'chat-server:other')],
  [
    'migrations in an init container',
    'migrations',
    /container migrate runs migrations/,
    (m) => (m.Deployment.spec.template.spec.initContainers = [{ name: 'migrate', image: 'x', command: ['npm', 'run', 'db:migrate'] }]),
  ],
  ['writable root filesystem', 'security', /Deployment: readOnlyRootFilesystem/, (m) => (m.Deployment.spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem = false)],
  ['the Job through npm and tsx', 'security', /Job: runs "npm run db:migrate"/, (m) => (m.Job.spec.template.spec.containers[0].command = ['npm', 'run', 'db:migrate'])],
  ['a startup window of 90 s', 'probes', /startupProbe allows 90 s/, (m) => (m.Deployment.spec.template.spec.containers[0].startupProbe.failureThreshold = 90)],
  ['rollout may drop ready pods', 'deployment', /maxUnavailable 0/, (m) => (m.Deployment.spec.strategy.rollingUpdate.maxUnavailable = 1)],
  ['Prometheus scrapes another port', 'deployment', /prometheus.io\/port is 9090/, (m) => (m.Deployment.spec.template.metadata.annotations['prometheus.io/port'] = '9090')],
  ['a namespace pinned', 'inventory', /service.yaml#0: metadata.namespace is set/, (m) => (m.Service.metadata.namespace = 'chat')],
  ['a ConfigMap value that is not a string', 'schema', /data\/data\/PORT must be string/, (m) => (m.ConfigMap.data.PORT = 3000)],
  ['replicas as a string', 'schema', /spec\/replicas must be integer/, (m) => (m.Deployment.spec.replicas = '3')],
  ['a required field missing', 'schema', /required property selector/, (m) => delete m.Deployment.spec.selector],
  [
    'a misspelt field (readinesProbe)',
    'unknownFields',
    /'"readinesProbe"' does not exist/,
    (m) => {
      const container = m.Deployment.spec.template.spec.containers[0];
      container.readinesProbe = container.readinessProbe;
      delete container.readinessProbe;
    },
  ],
  ['a misspelt field deep in the HPA', 'unknownFields', /'"stabilisationWindowSeconds"' does not exist/, (m) => (m.HorizontalPodAutoscaler.spec.behavior.scaleDown.stabilisationWindowSeconds = 600)],
];

function setEnv(deployment: Loose, name: string, value: string): void {
  const env = deployment.spec.template.spec.containers[0].env as Array<{ name: string; value?: string; valueFrom?: unknown }>;
  const entry = env.find((e) => e.name === name);
  if (!entry) throw new Error(`no env ${name} to change`);
  entry.value = value;
  delete entry.valueFrom;
}

describe('every check can fail', () => {
  it.each(MUTATIONS)(
    '%s → %s',
    (_description, check, expected, mutate) => {
      const copy: Manifest[] = structuredClone(MANIFESTS);
      const byKind = Object.fromEntries(copy.map(({ object }) => [object.kind, object]));
      mutate(byKind);
      const problems = run(CHECKS[check]!, new Ctx(copy));
      expect(problems.length, `check "${check}" passed a broken manifest`).toBeGreaterThan(0);
      expect(problems.join('\n')).toMatch(expected);
    },
    60_000,
  );
});

import { connect } from 'node:net';
import type { TestProject } from 'vitest/node';
import { deleteRedisKeys } from '@chat/testkit/services';
import { createMigratedDatabase } from '@chat/testkit/throwaway-database';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A database of this run's own, migrated, dropped after the run. */
    databaseUrl: string;
    /** The server to create further throwaway databases on (migration tests do). */
    adminDatabaseUrl: string;
    redisUrl: string;
    /** Prefix for every Redis key this run writes, so concurrent runs never collide. */
    redisPrefix: string;
  }
}

const DEFAULT_DATABASE_URL = 'postgresql://postgres@127.0.0.1:5432/postgres';
const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/**
 * PostgreSQL and Redis come from DATABASE_URL / REDIS_URL (defaults: the local servers). Only when a
 * variable is unset, nothing answers on the default port and a container runtime is available do we
 * start one with testcontainers.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const stops: Array<() => Promise<unknown>> = [];
  const adminUrl = await resolveService('DATABASE_URL', DEFAULT_DATABASE_URL, 5432, async () => {
    const { GenericContainer, Wait } = await import('testcontainers');
    const container = await new GenericContainer('postgres:17-alpine')
      .withEnvironment({ POSTGRES_HOST_AUTH_METHOD: 'trust' })
      .withExposedPorts(5432)
      .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
      .start();
    stops.push(() => container.stop());
    return `postgresql://postgres@${container.getHost()}:${container.getMappedPort(5432)}/postgres`;
  });
  const redisUrl = await resolveService('REDIS_URL', DEFAULT_REDIS_URL, 6379, async () => {
    const { GenericContainer, Wait } = await import('testcontainers');
    const container = await new GenericContainer('redis:7-alpine')
      .withExposedPorts(6379)
      .withWaitStrategy(Wait.forLogMessage(/Ready to accept connections/))
      .start();
    stops.push(() => container.stop());
    return `redis://${container.getHost()}:${container.getMappedPort(6379)}`;
  });

  const database = await createMigratedDatabase(adminUrl, 'chat_test');
  const { name, url: databaseUrl } = database;

  project.provide('databaseUrl', databaseUrl);
  project.provide('adminDatabaseUrl', adminUrl);
  project.provide('redisUrl', redisUrl);
  const redisPrefix = `test:${name}:`;
  project.provide('redisPrefix', redisPrefix);

  return async () => {
    await database.drop();
    await deleteRedisKeys(redisUrl, redisPrefix);
    for (const stop of stops.reverse()) await stop();
  };
}

async function resolveService(variable: string, fallback: string, port: number, startContainer: () => Promise<string>): Promise<string> {
  const configured = process.env[variable];
  if (configured) return configured;
  if (await answers('127.0.0.1', port)) return fallback;
  try {
    return await startContainer();
  } catch (error) {
    throw new Error(`${variable} is unset, nothing answers on 127.0.0.1:${port}, and no container could be started: ${String(error)}`);
  }
}

function answers(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: 1000 });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

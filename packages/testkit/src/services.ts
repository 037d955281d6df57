/**
 * Private PostgreSQL, Redis, Redis Cluster and PgBouncer instances on free loopback ports, for runs
 * that stop and restart them (the chaos harness, outage tests) or put a pooler in front (the PgBouncer
 * tests). The system services on 5432/6379 are never touched. Each instance lives in a temporary
 * folder that destroy() removes; a process that exits without destroy() still kills them
 * (synchronously, on 'exit'). One module per service; this one gathers them under one import.
 */
export { findPgBouncer, startPrivatePgBouncer, type PgBouncerOptions, type PrivatePgBouncer } from './pgbouncer.ts';
export { findPostgresBin, startPrivatePostgres, type PrivatePostgres } from './postgres.ts';
export { deleteRedisKeys, startPrivateRedis, type PrivateRedis } from './redis.ts';
export { PRIVATE_CLUSTER_NODE_TIMEOUT_MS, startPrivateRedisCluster, type PrivateRedisCluster } from './redis-cluster.ts';
export { waitUntil, type RestartableService } from './service-lifetime.ts';

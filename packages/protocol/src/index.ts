export * from './errors.ts';
export * from './ack.ts';
export * from './backoff.ts';
export * from './limits.ts';
export * from './schemas.ts';
export * from './events.ts';
export * from './scheduled.ts';
export type * from './admin.ts';
export * from './uploads.ts';

export * from './errors.ts';
export * from './ack.ts';
export * from './events.ts';

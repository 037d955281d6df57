export { ChatClient, type ChatClientEvents, type ChatClientOptions, type ChatSocket, type SendValidator, type StatusEvent, type TokenSource } from './client.ts';
export { Emitter, type EventMap } from './emitter.ts';
export { ChatError, type ClientErrorCode } from './errors.ts';
export type { OutgoingMessage, SendInput } from './outgoing.ts';
export type { MessageState, MessageStatus } from './state.ts';
export type { RetryOptions } from './timers.ts';
export type { TypingEvent } from './typing.ts';
export type { UploadBody, UploadOptions } from './uploads.ts';

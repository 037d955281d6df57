import type { z } from 'zod';

/** A configuration the node refuses to start with; its message is one line naming the variable. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Variables whose value is never echoed in an error line, even when it is wrong. */
const SECRET_VARIABLES = new Set(['JWT_SECRET', 'JWT_SECRET_PREVIOUS', 'NOTIFY_WEBHOOK_SECRET', 'ADMIN_API_KEYS', 'SERVER_API_KEYS', 'UPLOAD_SIGNING_SECRET', 'S3_SECRET_ACCESS_KEY']);

/** A bad value is echoed in the error line, which lands in logs: the password of any URL in it is masked. */
function redactCredentials(text: string): string {
  return text.replace(/(\/\/[^:/@\s"]*:)[^@\s"]*@/g, '$1***@');
}

/** Validates `source` against `schema`; a ConfigError names the first bad variable in one line. */
export function parseEnv<T extends z.ZodType>(schema: T, source: NodeJS.ProcessEnv): z.infer<T> {
  // Empty strings mean "unset": compose files and shells often export VAR= to clear a value.
  const raw = Object.fromEntries(Object.entries(source).filter(([, value]) => value !== ''));
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const name = String(issue.path[0] ?? 'environment');
    const value = raw[name];
    const got = value === undefined ? 'unset' : SECRET_VARIABLES.has(name) ? `a hidden value of ${value.length} characters` : redactCredentials(JSON.stringify(value));
    throw new ConfigError(`Invalid configuration: ${name}: expected ${describeIssue(issue)}, got ${got}`);
  }
  return parsed.data;
}

function describeIssue(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'too_small':
      if (issue.origin === 'array') return `at least ${issue.minimum} comma-separated ${issue.minimum === 1 ? 'entry' : 'entries'}`;
      return issue.origin === 'string' ? `at least ${issue.minimum} characters` : `a number >= ${issue.minimum}`;
    case 'too_big':
      return issue.origin === 'string' ? `at most ${issue.maximum} characters` : `a number <= ${issue.maximum}`;
    case 'invalid_value':
      return `one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'invalid_type':
      return issue.expected === 'number' ? 'an integer' : issue.expected;
    case 'invalid_format':
    case 'custom':
      return issue.message;
    default:
      return issue.message;
  }
}

// Pure validation and parsing used by the pages (unit-tested).

export interface BotForm {
  name: string;
  functionUuid: string;
  disclaimerAccepted: boolean;
  conversationTypes: string[];
  skills: string[];
  escalation: { skill: string; message: string; agentMessage?: string; failureMessage?: string; retries: number; turnTimeoutMs: number };
}

// The REST body of a bot form (POST bots, PUT bots/{id}, POST bots/test-connection).
export function botBodyOf(f: BotForm): Record<string, unknown> {
  return {
    name: f.name,
    vendor: 'CUSTOM_INTEGRATION',
    functionUuid: f.functionUuid,
    conversationTypes: f.conversationTypes,
    skills: f.skills,
    disclaimerAccepted: f.disclaimerAccepted,
    escalation: f.escalation,
  };
}

// Which Test Connection call a bot form makes: the saved bot's (its stored config) when the bot
// is saved and the form unchanged, else the unsaved-form call with the form's values.
export function testConnectionCall(botId: string | null, dirty: boolean, f: BotForm): { path: string; body: Record<string, unknown>; unsaved: boolean } {
  if (botId && !dirty) return { path: `bots/${encodeURIComponent(botId)}/test-connection`, body: {}, unsaved: false };
  return { path: 'bots/test-connection', body: botBodyOf(f), unsaved: true };
}

export function validateLogin(v: { account: string; username: string; password: string }): Record<string, string> {
  const errs: Record<string, string> = {};
  if (!v.account.trim()) errs.account = 'Enter your account id.';
  else if (!/^[A-Za-z0-9_.-]+$/.test(v.account.trim())) errs.account = 'An account id has only letters, digits, dot, dash or underscore.';
  if (!v.username.trim()) errs.username = 'Enter your username.';
  if (!v.password) errs.password = 'Enter your password.';
  return errs;
}

export function validateBot(f: BotForm): Record<string, string> {
  const e: Record<string, string> = {};
  if (!f.name.trim()) e.name = 'Enter a bot name.';
  if (!f.functionUuid) e.functionUuid = 'Pick the function that answers for this bot.';
  if (!f.disclaimerAccepted) e.disclaimerAccepted = 'You must agree to the Data Disclaimer to use LivePerson Functions.';
  if (!f.conversationTypes.length) e.conversationTypes = 'Choose at least one conversation type.';
  if (!Number.isInteger(f.escalation.retries) || f.escalation.retries < 0 || f.escalation.retries > 5) e.retries = 'Retries must be a whole number from 0 to 5.';
  if (!Number.isFinite(f.escalation.turnTimeoutMs) || f.escalation.turnTimeoutMs < 100 || f.escalation.turnTimeoutMs > 30000) e.turnTimeoutMs = 'The turn timeout must be between 100 and 30000 ms.';
  return e;
}

export function validateDomain(d: string): string | null {
  if (!d) return 'empty entry';
  const wild = (d.match(/\*/g) ?? []).length;
  if (wild > 1) return `${d}: at most one wildcard`;
  if (wild === 1 && !d.startsWith('*.')) return `${d}: a wildcard must be the first label (*.example.com)`;
  const host = d.replace(/^\*\./, '');
  if (!/^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(host)) return `${d}: not a valid domain name`;
  return null;
}

export interface NewUser {
  loginName: string;
  password: string;
  roles: string[];
  type: string;
  skills: string[];
  maxOpenConversations: number;
}

export function validateUser(u: NewUser, creating: boolean): string[] {
  const e: string[] = [];
  if (!u.loginName.trim()) e.push('Enter a login name.');
  if (creating && u.password.length < 8) e.push('The password needs at least 8 characters.');
  if (!creating && u.password && u.password.length < 8) e.push('A new password needs at least 8 characters.');
  if (u.type === 'HUMAN' && !u.roles.length) e.push('Give a human user at least one role.');
  if (!Number.isInteger(u.maxOpenConversations) || u.maxOpenConversations < 0 || u.maxOpenConversations > 999) e.push('Max open conversations must be 0–999.');
  return e;
}

export function jwtSub(jwt: string): string {
  try {
    const part = jwt.split('.')[1] ?? '';
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((part.length + 3) % 4));
    return String((JSON.parse(json) as { sub?: string }).sub ?? '');
  } catch {
    return '';
  }
}

export interface ValidationError {
  path: string;
  message: string;
}

export function errorsOf(v: unknown): { valid: boolean; errors: ValidationError[] } {
  const o = (v ?? {}) as { valid?: boolean; errors?: unknown[] };
  const errors = (o.errors ?? []).map((e) => {
    const x = (e ?? {}) as { path?: string; instancePath?: string; message?: string };
    return { path: x.path ?? x.instancePath ?? '', message: x.message ?? String(e) };
  });
  return { valid: o.valid === true && errors.length === 0, errors };
}

// Tolerant readers for REST objects: the server's field names follow LivePerson's where they
// exist (eventId, implementation.code, lastDeployment…) and API.md's where those differ.

export interface EnvVar {
  key: string;
  value: string;
}

export interface Fn {
  uuid: string;
  name: string;
  description: string;
  event: string;
  state: string;
  version: number;
  code: string;
  env: EnvVar[];
  updatedAt?: number | string;
  deployError?: string;
  raw: Record<string, unknown>;
}

type O = Record<string, unknown>;
const obj = (v: unknown): O => (v && typeof v === 'object' && !Array.isArray(v) ? (v as O) : {});
const str = (...vs: unknown[]): string => {
  for (const v of vs) if (typeof v === 'string') return v;
  return '';
};

export function envOf(v: unknown): EnvVar[] {
  if (Array.isArray(v)) return v.map((x) => ({ key: String(obj(x).key ?? ''), value: String(obj(x).value ?? '') }));
  if (v && typeof v === 'object') return Object.entries(v as O).map(([key, value]) => ({ key, value: String(value) }));
  return [];
}

export function deployErrorOf(v: unknown): string {
  const o = obj(v);
  if (typeof v === 'string') return v;
  const parts: string[] = [];
  const code = str(o.errorCode, o.code);
  const msg = str(o.errorMsg, o.message);
  if (msg) parts.push(msg);
  if (code) parts.push(`(${code})`);
  const logs = Array.isArray(o.errorLogs) ? o.errorLogs : [];
  for (const l of logs) {
    const lo = obj(l);
    parts.push(`\n[${str(lo.level) || 'Error'}] ${str(lo.message)}`);
  }
  return parts.join(' ').trim();
}

export function fnOf(v: unknown): Fn {
  const o = obj(v);
  const impl = obj(o.implementation);
  const last = obj(o.lastDeployment);
  let deployError = '';
  const de = o.deploymentError ?? o.deployError ?? last.deploymentError ?? last.error;
  if (de) deployError = deployErrorOf(typeof de === 'string' ? safeParse(de) : de);
  return {
    uuid: str(o.uuid, o.id),
    name: str(o.name),
    description: str(o.description),
    event: str(o.event, o.eventId),
    state: str(o.state) || 'Draft',
    version: Number(o.version ?? 0),
    code: str(o.code, impl.code),
    env: envOf(o.environmentVariables ?? impl.environmentVariables ?? o.env),
    updatedAt: (o.updatedAt as number | string | undefined) ?? undefined,
    deployError,
    raw: o,
  };
}

function safeParse(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return s;
  }
}

export interface Template {
  event: string;
  name: string;
  code: string;
  samplePayload: unknown;
}

// GET functions/templates?event=… may answer one template, a list, or {templates:[…]}.
export function templatesOf(v: unknown): Template[] {
  const list: unknown[] = Array.isArray(v) ? v : Array.isArray(obj(v).templates) ? (obj(v).templates as unknown[]) : v ? [v] : [];
  return list
    .map((x) => {
      const o = obj(x);
      return {
        event: str(o.event, o.eventId),
        name: str(o.name, o.eventName, o.title) || str(o.event, o.eventId),
        code: str(o.code, o.template),
        samplePayload: o.samplePayload ?? o.payload ?? o.sample ?? obj(o.input).payload ?? null,
      };
    })
    .filter((t) => t.code || t.event);
}

export interface LogLine {
  ts: number | string;
  level: string;
  message: string;
  extras: unknown;
  requestId: string;
}

export function logsOf(v: unknown): LogLine[] {
  const list = Array.isArray(v) ? v : Array.isArray(obj(v).logs) ? (obj(v).logs as unknown[]) : [];
  return list.map((x) => {
    const o = obj(x);
    let extras: unknown = o.extras ?? o.extras_json;
    if (typeof extras === 'string') extras = safeParse(extras);
    return {
      ts: (o.timestamp ?? o.ts ?? 0) as number,
      level: str(o.level) || 'Info',
      message: str(o.message),
      extras,
      requestId: str(o.requestId, o.requestID, o.request_id),
    };
  });
}

export interface BotEscalation {
  skill: string;
  message: string;
  agentMessage?: string;
  failureMessage?: string;
  retries: number;
  turnTimeoutMs: number;
}

export interface Bot {
  id: string;
  name: string;
  vendor: string;
  functionUuid: string;
  conversationTypes: string[];
  skills: string[];
  disclaimerAccepted: boolean;
  escalation: BotEscalation;
  status: string;
  raw: O;
}

export function botOf(v: unknown): Bot {
  const o = obj(v);
  const cfg = { ...obj(typeof o.config === 'string' ? safeParse(o.config) : o.config), ...o };
  const esc = obj(cfg.escalation);
  return {
    id: str(o.id, o.botId),
    name: str(cfg.name),
    vendor: str(cfg.vendor) || 'CUSTOM_INTEGRATION',
    functionUuid: str(cfg.functionUuid, cfg.function),
    conversationTypes: Array.isArray(cfg.conversationTypes) ? cfg.conversationTypes.map(String) : ['MESSAGING'],
    skills: Array.isArray(cfg.skills) ? cfg.skills.map((s) => (typeof s === 'object' ? str(obj(s).id, obj(s).name) : String(s))) : [],
    disclaimerAccepted: cfg.disclaimerAccepted === true,
    escalation: {
      skill: str(esc.skill, esc.skillId, esc.skillName),
      message: str(esc.message),
      agentMessage: str(esc.agentMessage),
      failureMessage: str(esc.failureMessage),
      retries: Number(esc.retries ?? 0),
      turnTimeoutMs: Number(esc.turnTimeoutMs ?? 30000),
    },
    status: str(o.status, o.state) || 'OFFLINE',
    raw: o,
  };
}

export interface Turn {
  id: string;
  ts: number | string;
  conversation: string;
  outcome: string;
  input: unknown;
  response: unknown;
  actions: Record<string, unknown>[];
  timings: Record<string, unknown>;
  error: string;
}

export function turnsOf(v: unknown): Turn[] {
  const list = Array.isArray(v) ? v : Array.isArray(obj(v).turns) ? (obj(v).turns as unknown[]) : [];
  const parse = (x: unknown) => (typeof x === 'string' ? safeParse(x) : x);
  return list.map((x) => {
    const o = obj(x);
    const actions = parse(o.actions ?? o.actions_json);
    return {
      id: str(o.turnId, o.turn_id, o.id),
      ts: (o.ts ?? o.timestamp ?? 0) as number,
      conversation: str(o.conversationId, o.conversation, o.convId),
      outcome: str(o.outcome) || 'OK',
      input: parse(o.input ?? o.input_json),
      response: parse(o.response ?? o.response_json),
      actions: Array.isArray(actions) ? (actions as O[]) : [],
      timings: obj(parse(o.timings ?? o.timings_json)),
      error: typeof o.error === 'string' ? o.error : o.error ? JSON.stringify(o.error) : '',
    };
  });
}

// An action the connector did not carry out (refused, dropped, failed).
export function isRefused(a: Record<string, unknown>): boolean {
  const s = String(a.status ?? a.outcome ?? a.result ?? '').toUpperCase();
  return a.refused === true || a.ok === false || /REFUSED|DROPPED|DISCARDED|FAILED|IGNORED|REJECTED|ERROR/.test(s);
}

export interface Skill {
  id: string;
  name: string;
}

export function skillsOf(v: unknown): Skill[] {
  const list = Array.isArray(v) ? v : Array.isArray(obj(v).skills) ? (obj(v).skills as unknown[]) : [];
  return list.map((x) => ({ id: String(obj(x).id ?? ''), name: str(obj(x).name) }));
}

export interface User {
  id: string;
  loginName: string;
  roles: string[];
  type: string;
  skills: string[];
  maxOpenConversations: number;
  pid: string;
}

export function usersOf(v: unknown): User[] {
  const list = Array.isArray(v) ? v : Array.isArray(obj(v).users) ? (obj(v).users as unknown[]) : [];
  return list.map((x) => {
    const o = obj(x);
    return {
      id: String(o.id ?? o.userId ?? ''),
      loginName: str(o.loginName, o.login_name, o.username),
      roles: Array.isArray(o.roles) ? o.roles.map(String) : [],
      type: str(o.type) || 'HUMAN',
      skills: Array.isArray(o.skills) ? o.skills.map((s) => (typeof s === 'object' ? String(obj(s).id ?? '') : String(s))) : [],
      maxOpenConversations: Number(o.maxOpenConversations ?? 10),
      pid: str(o.pid, o.userPid),
    };
  });
}

// Why a bot may not get the conversations of its skills: routing offers a new conversation to the
// least-loaded ONLINE agent serving its skill, bots and humans alike, so another bot or a human
// agent on the same skill takes part of them. One message per shared skill and kind of sharer.
// `selected` are skill ids or names; `selfBotId` is the bot being edited (null for a new one).
export function routingWarnings(selected: string[], skills: Skill[], selfBotId: string | null, bots: Bot[], users: User[]): string[] {
  const idOf = (s: string) => skills.find((k) => k.id === s || k.name === s)?.id ?? s;
  const nameOf = (id: string) => skills.find((k) => k.id === id)?.name ?? id;
  const out: string[] = [];
  for (const skill of [...new Set(selected.map(idOf))]) {
    const otherBots = bots.filter((b) => b.id !== selfBotId && b.skills.some((s) => idOf(s) === skill));
    if (otherBots.length) {
      const names = otherBots.map((b) => `“${b.name}” (${b.status || 'unknown'})`).join(', ');
      out.push(`Skill “${nameOf(skill)}” is also served by bot ${names}: while both are online, new conversations on it are split between the bots (least loaded first).`);
    }
    const humans = users.filter((u) => u.type !== 'BOT' && u.skills.some((s) => idOf(s) === skill));
    if (humans.length) {
      const names = humans.map((u) => `“${u.loginName}”`).join(', ');
      out.push(`Skill “${nameOf(skill)}” is held by human agent${humans.length > 1 ? 's' : ''} ${names}: while online, new conversations may be offered to them instead of the bot (least loaded first). Give the bot a skill of its own to have it answer every conversation.`);
    }
  }
  return out;
}

export const CUSTOM_INTEGRATION_EVENT = 'bot_connectors_custom_integration';

export const EVENTS: { id: string; name: string }[] = [
  { id: 'bot_connectors_custom_integration', name: 'Third-Party Bots Custom Integration' },
  { id: 'bot_connectors_pre_hook', name: 'Third-Party Bots Pre Hook' },
  { id: 'bot_connectors_post_hook', name: 'Third-Party Bots Post Hook' },
  { id: 'bot_connectors_error_hook', name: 'Third-Party Bots Error Hook' },
  { id: 'no_event', name: 'No Event (external invocation)' },
];

export const ENV_NAME_RE = /^[A-Z_][A-Z0-9_]*$/;
export const RESERVED_ENV = new Set([
  'BRAND_ID', 'LAMBDA_UUID', 'DOMAIN', 'DC', 'HTTPS_PROXY', 'HTTP_PROXY', 'NO_PROXY', 'VAULT_K8S_MOUNT',
  'VAULT_DOMAIN', 'VAULT_SERVICE_ENV', 'VAULT_LAMBDA_ROLE', 'WATCHDOG_VERSION', 'NODE_ENV',
]);

// Problems with an environment-variable list (LivePerson's rules), one message per problem.
export function validateEnv(env: EnvVar[]): string[] {
  const errs: string[] = [];
  const seen = new Set<string>();
  env.forEach((e, i) => {
    const n = `Variable ${i + 1}`;
    if (!e.key) errs.push(`${n}: the name is empty.`);
    else if (!ENV_NAME_RE.test(e.key)) errs.push(`${n} (${e.key}): use uppercase letters, digits and _, not starting with a digit.`);
    else if (RESERVED_ENV.has(e.key)) errs.push(`${n} (${e.key}): the name is reserved.`);
    if (e.key.length > 200) errs.push(`${n}: the name is longer than 200 characters.`);
    if (e.value.length > 200) errs.push(`${n}: the value is longer than 200 characters.`);
    if (e.key && seen.has(e.key)) errs.push(`${n} (${e.key}): duplicate name.`);
    seen.add(e.key);
  });
  return errs;
}

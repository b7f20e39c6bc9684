// LivePerson messaging protocol (UMS): envelopes, request correlation, and the shapes the
// console reads from notifications. Pure logic here; MessagingSocket adds a WebSocket.
//
// Request:      {"kind":"req","id":"<id>","type":"<type>","body":{…},"metadata"?:[…]}
// Response:     {"kind":"resp","reqId":"<id>","code":200,"type":"<name>","body":…}
// Notification: {"kind":"notification","type":"<name>","body":{…}}

export interface Envelope {
  kind: string;
  id?: string;
  reqId?: string;
  code?: number;
  type?: string;
  body?: unknown;
  headers?: unknown;
  metadata?: unknown;
}

export interface RequestFrame {
  kind: 'req';
  id: string;
  type: string;
  body?: unknown;
  headers?: unknown[];
  metadata?: unknown[];
}

export function encodeRequest(
  id: string,
  type: string,
  body?: unknown,
  extra: { headers?: unknown[]; metadata?: unknown[] } = {},
): string {
  const f: RequestFrame = { kind: 'req', id, type };
  if (body !== undefined) f.body = body;
  if (extra.headers) f.headers = extra.headers;
  if (extra.metadata) f.metadata = extra.metadata;
  return JSON.stringify(f);
}

export type Decoded =
  | { kind: 'resp'; reqId: string; code: number; type: string; body: unknown }
  | { kind: 'notification'; type: string; body: unknown }
  | { kind: 'other'; raw: unknown }
  | { kind: 'invalid'; error: string };

export function decodeFrame(text: string): Decoded {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    return { kind: 'invalid', error: `not JSON: ${(e as Error).message}` };
  }
  if (!j || typeof j !== 'object' || Array.isArray(j)) return { kind: 'invalid', error: 'not an object' };
  const o = j as Envelope;
  if (o.kind === 'resp') {
    if (o.reqId === undefined || o.reqId === null) return { kind: 'invalid', error: 'response without reqId' };
    // A missing code counts as success (as in node-agent-sdk).
    return { kind: 'resp', reqId: String(o.reqId), code: typeof o.code === 'number' ? o.code : 200, type: o.type ?? '', body: o.body };
  }
  if (o.kind === 'notification') return { kind: 'notification', type: o.type ?? '', body: o.body };
  return { kind: 'other', raw: j };
}

// A response with code > 399 is an error; its body usually carries a message.
export class ProtocolError extends Error {
  constructor(
    public readonly code: number,
    public readonly type: string,
    public readonly body: unknown,
  ) {
    super(protocolErrorMessage(code, type, body));
    this.name = 'ProtocolError';
  }
}

export function protocolErrorMessage(code: number, _type: string, body: unknown): string {
  let detail = '';
  if (typeof body === 'string') detail = body;
  else if (body && typeof body === 'object') {
    const b = body as Record<string, unknown>;
    const err = b.error as Record<string, unknown> | string | undefined;
    if (typeof err === 'string') detail = err;
    else if (err && typeof err.message === 'string') detail = err.message;
    else if (typeof b.msg === 'string') detail = b.msg;
    else if (typeof b.message === 'string') detail = b.message;
    else detail = JSON.stringify(body).slice(0, 200);
  }
  return inWords(code, detail);
}

// What a failed request means, in words (no wire type names): the server's own message when it
// gave one, after what kind of failure it was.
export function inWords(code: number, detail: string): string {
  const what =
    code === 400 ? 'The server refused the request'
    : code === 401 ? 'Authentication failed'
    : code === 403 ? 'Not allowed'
    : code === 404 ? 'Not found'
    : code === 409 ? 'That changed meanwhile'
    : code === 413 ? 'Too large'
    : code === 429 ? 'Too many requests; wait a moment and try again'
    : code >= 500 ? 'The server could not do it'
    : `The request failed (${code})`;
  const d = detail.trim();
  if (!d) return `${what}.`;
  return `${what}: ${d.charAt(0).toUpperCase()}${d.slice(1)}${/[.!?]$/.test(d) ? '' : '.'}`;
}

interface Pending {
  resolve: (body: unknown) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

// Correlates responses to requests by id. Transport-free so it can be unit-tested.
export class Correlator {
  private next = 1;
  private pending = new Map<string, Pending>();
  constructor(private readonly timeoutMs = 15000) {}

  nextId(): string {
    return String(this.next++);
  }

  track(id: string, type: string): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${type}: request has timed out`));
      }, this.timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
    });
  }

  // Returns true when the response matched a pending request.
  settle(d: { reqId: string; code: number; type: string; body: unknown }): boolean {
    const p = this.pending.get(d.reqId);
    if (!p) return false;
    this.pending.delete(d.reqId);
    clearTimeout(p.timer);
    if (d.code > 399) p.reject(new ProtocolError(d.code, d.type, d.body));
    else p.resolve(d.body);
    return true;
  }

  failAll(reason: string): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new Error(reason));
      this.pending.delete(id);
    }
  }

  get size(): number {
    return this.pending.size;
  }
}

// ---------------------------------------------------------------------------------------------
// Event records (ms.MessagingEventNotification changes, .ams.ms.OnlineEventDistribution bodies,
// QueryMessages$Response items).

export interface EventRecord {
  sequence?: number;
  serverTimestamp?: number;
  dialogId?: string;
  conversationId?: string;
  originatorId?: string;
  originatorPId?: string;
  originatorMetadata?: { id?: string; role?: string };
  messageAudience?: string;
  event?: {
    type?: string;
    contentType?: string;
    message?: unknown;
    content?: unknown;
    quickReplies?: QuickReplies;
    chatState?: string;
    status?: string;
    sequenceList?: number[];
  };
  metadata?: unknown[] | null;
}

export interface QuickReply {
  title: string;
  text: string; // what publishText sends
  tooltip?: string;
  metadata?: unknown[];
}

export interface QuickReplies {
  type?: string;
  itemsPerRow?: number;
  replies?: unknown[];
}

// Records from either notification shape: {changes:[…]} or one bare record.
export function recordsOf(body: unknown): EventRecord[] {
  if (Array.isArray(body)) return body as EventRecord[];
  if (!body || typeof body !== 'object') return [];
  const b = body as { changes?: unknown; event?: unknown; dialogId?: string };
  if (Array.isArray(b.changes)) {
    return (b.changes as EventRecord[]).map((c) => (c.dialogId || !b.dialogId ? c : { ...c, dialogId: b.dialogId }));
  }
  if (b.event) return [body as EventRecord];
  return [];
}

export function isPrivate(r: EventRecord): boolean {
  return r.messageAudience === 'AGENTS_AND_MANAGERS';
}

export function roleOf(r: EventRecord): string {
  return r.originatorMetadata?.role ?? '';
}

export interface Intent {
  id: string;
  name?: string;
  confidence?: number;
}

export interface Insight {
  intents: Intent[];
  reasons: string[]; // ActionReason / escalation reasons
  businessCases: string[];
}

function metaArray(m: unknown): Record<string, unknown>[] {
  if (Array.isArray(m)) return m.filter((x) => x && typeof x === 'object') as Record<string, unknown>[];
  if (m && typeof m === 'object') return [m as Record<string, unknown>];
  return [];
}

// BotResponse intents, ActionReason and EscalationSummary from a record's metadata.
export function insightOf(r: EventRecord): Insight {
  const out: Insight = { intents: [], reasons: [], businessCases: [] };
  for (const m of metaArray(r.metadata)) {
    if (m.type === 'BotResponse') {
      for (const i of metaArray(m.intents)) {
        const conf = typeof i.confidence === 'number' ? i.confidence : typeof i.confidenceScore === 'number' ? i.confidenceScore : undefined;
        out.intents.push({ id: String(i.id ?? ''), name: typeof i.name === 'string' ? i.name : undefined, confidence: conf });
      }
      if (Array.isArray(m.businessCases)) out.businessCases.push(...m.businessCases.map(String));
    } else if (m.type === 'ActionReason') {
      const reason = [m.reason, m.reasonId].filter((x) => typeof x === 'string' && x).join(' / ');
      if (reason) out.reasons.push(reason);
    } else if (m.type === 'EscalationSummary') {
      if (typeof m.escalationCause === 'string') out.reasons.push(m.escalationCause);
    }
  }
  return out;
}

// Text of a ContentEvent (text/plain), or a short description of other content.
export function textOf(r: EventRecord): string {
  const e = r.event ?? {};
  if (e.type === 'ContentEvent') {
    if (typeof e.message === 'string') return e.message;
    if (e.message && typeof e.message === 'object') {
      const m = e.message as { caption?: string; relativePath?: string };
      return m.caption ?? m.relativePath ?? '[file]';
    }
  }
  if (e.type === 'RichContentEvent') {
    const c = richContentOf(r) as { message?: unknown } | null;
    if (c && typeof c.message === 'string') return c.message;
    return '';
  }
  return '';
}

// The structured content of a RichContentEvent (`content`; the schema's `message` is accepted too).
export function richContentOf(r: EventRecord): unknown | null {
  const e = r.event ?? {};
  if (e.type !== 'RichContentEvent') return null;
  const c = e.content ?? e.message;
  return c && typeof c === 'object' ? c : null;
}

// Quick replies ride on a ContentEvent (`quickReplies`) or inside structured content.
export function quickRepliesOf(r: EventRecord): QuickReply[] {
  const e = r.event ?? {};
  let qr: QuickReplies | undefined = e.quickReplies;
  if (!qr) {
    const c = richContentOf(r) as { quickReplies?: QuickReplies } | null;
    if (c && c.quickReplies) qr = c.quickReplies;
  }
  if (!qr || !Array.isArray(qr.replies)) return [];
  const out: QuickReply[] = [];
  for (const raw of qr.replies) {
    if (!raw || typeof raw !== 'object') continue;
    const b = raw as { title?: string; tooltip?: string; click?: { actions?: { type?: string; text?: string }[]; metadata?: unknown[] } };
    const actions = b.click?.actions ?? [];
    const pub = actions.find((a) => a && a.type === 'publishText' && typeof a.text === 'string');
    const title = typeof b.title === 'string' ? b.title : pub?.text ?? '';
    out.push({ title, text: pub?.text ?? title, tooltip: b.tooltip, metadata: b.click?.metadata });
  }
  return out;
}

// Stable ordering and de-duplication of records by sequence (ChatStateEvents carry none).
export function mergeRecords(existing: EventRecord[], incoming: EventRecord[]): EventRecord[] {
  const bySeq = new Map<number, EventRecord>();
  const noSeq: EventRecord[] = [];
  for (const r of [...existing, ...incoming]) {
    if (typeof r.sequence === 'number') bySeq.set(r.sequence, r);
    else noSeq.push(r);
  }
  const seq = [...bySeq.values()].sort((a, b) => (a.sequence ?? 0) - (b.sequence ?? 0));
  return [...seq, ...noSeq];
}

// ---------------------------------------------------------------------------------------------
// Conversations (ExConversationChangeNotification) and routing tasks.

export interface ConvSummary {
  convId: string;
  state: string; // OPEN | CLOSE
  skillId: string;
  startTs: number;
  ttrType: string;
  ttrValue: number; // seconds
  effectiveTTR: number; // absolute ms, or -1
  consumerId: string;
  assignedAgents: string[]; // acct.uid (agent view) or PIds
  closeReason?: string;
  deleted: boolean;
}

function firstOf(v: unknown): string[] {
  if (Array.isArray(v)) return v.map((x) => (typeof x === 'string' ? x : String((x as { id?: string })?.id ?? '')));
  return [];
}

// Changes of a cqm/.ams.aam ExConversationChangeNotification as summaries. Accepts both the
// internal shape (participants as a role map) and the public one (participants [{id,role}]).
export function conversationsOf(body: unknown): ConvSummary[] {
  const b = (body ?? {}) as { changes?: unknown[] };
  const out: ConvSummary[] = [];
  for (const ch of b.changes ?? []) {
    const c = ch as { type?: string; result?: Record<string, unknown> };
    const res = c.result ?? {};
    const d = (res.conversationDetails ?? {}) as Record<string, unknown>;
    const convId = String(res.convId ?? d.convId ?? (Array.isArray(d.dialogs) ? (d.dialogs[0] as { dialogId?: string })?.dialogId : '') ?? '');
    if (!convId) continue;
    const participants = d.participants;
    let consumer: string[] = [];
    let agents: string[] = [];
    if (Array.isArray(participants)) {
      for (const p of participants as { id?: string; role?: string }[]) {
        if (p.role === 'CONSUMER' && p.id) consumer.push(p.id);
        if (p.role === 'ASSIGNED_AGENT' && p.id) agents.push(p.id);
      }
    } else if (participants && typeof participants === 'object') {
      const pm = participants as Record<string, unknown>;
      consumer = firstOf(pm.CONSUMER);
      agents = firstOf(pm.ASSIGNED_AGENT);
    }
    if (!agents.length && d.participantsPId && typeof d.participantsPId === 'object') {
      agents = firstOf((d.participantsPId as Record<string, unknown>).ASSIGNED_AGENT);
    }
    if (!consumer.length && d.participantsPId && typeof d.participantsPId === 'object') {
      consumer = firstOf((d.participantsPId as Record<string, unknown>).CONSUMER);
    }
    const ttr = (d.ttr ?? {}) as { ttrType?: string; value?: number };
    out.push({
      convId,
      state: String(d.state ?? 'OPEN'),
      skillId: String(d.skillId ?? '-1'),
      startTs: Number(d.startTs ?? 0),
      ttrType: String(ttr.ttrType ?? 'NORMAL'),
      ttrValue: Number(ttr.value ?? 3600),
      effectiveTTR: typeof res.effectiveTTR === 'number' ? res.effectiveTTR : -1,
      consumerId: consumer[0] ?? '',
      assignedAgents: agents,
      closeReason: typeof d.closeReason === 'string' ? d.closeReason : undefined,
      deleted: c.type === 'DELETE',
    });
  }
  return out;
}

export interface Ring {
  ringId: string;
  ringState: string;
  ringExpirationTs: number;
}

export interface RoutingTask {
  taskId: string;
  conversationId: string;
  consumerId: string;
  skillId: string;
  completed: boolean;
  deleted: boolean;
  rings: Ring[];
}

export function routingTasksOf(body: unknown): RoutingTask[] {
  const b = (body ?? {}) as { changes?: unknown[] };
  const out: RoutingTask[] = [];
  for (const ch of b.changes ?? []) {
    const c = ch as { type?: string; result?: Record<string, unknown> };
    const r = c.result ?? {};
    const rings = Array.isArray(r.ringsDetails) ? (r.ringsDetails as Record<string, unknown>[]) : [];
    out.push({
      taskId: String(r.routingTaskId ?? r.conversationId ?? ''),
      conversationId: String(r.conversationId ?? ''),
      consumerId: String(r.consumerId ?? ''),
      skillId: String(r.skillId ?? '-1'),
      completed: r.taskCompleted === true,
      deleted: c.type === 'DELETE',
      rings: rings.map((x) => ({
        ringId: String(x.ringId ?? ''),
        ringState: String(x.ringState ?? ''),
        ringExpirationTs: Number(x.ringExpirationTs ?? 0),
      })),
    });
  }
  return out;
}

// The ring an agent can accept, if any.
export function waitingRing(t: RoutingTask): Ring | undefined {
  return t.rings.find((r) => r.ringState === 'WAITING');
}

// Notification type names on the agent socket are internal (.ams.…); accept public ones too.
export function normType(type: string): string {
  const map: Record<string, string> = {
    '.ams.aam.ExConversationChangeNotification': 'ExConversationChange',
    'cqm.ExConversationChangeNotification': 'ExConversationChange',
    '.ams.ms.OnlineEventDistribution': 'MessagingEvent',
    'ms.MessagingEventNotification': 'MessagingEvent',
    '.ams.routing.RoutingTaskNotification': 'RoutingTask',
    'routing.RoutingTaskNotification': 'RoutingTask',
    '.ams.routing.AgentStateNotification': 'AgentState',
    'routing.AgentStateNotification': 'AgentState',
  };
  return map[type] ?? type;
}

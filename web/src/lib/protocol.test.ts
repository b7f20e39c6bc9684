import { describe, expect, it, vi } from 'vitest';
import {
  conversationsOf,
  Correlator,
  decodeFrame,
  encodeRequest,
  insightOf,
  isPrivate,
  mergeRecords,
  normType,
  ProtocolError,
  inWords,
  protocolErrorMessage,
  quickRepliesOf,
  recordsOf,
  richContentOf,
  routingTasksOf,
  textOf,
  waitingRing,
  type EventRecord,
} from './protocol';

describe('envelopes', () => {
  it('encodes a request with body, headers and metadata', () => {
    const f = JSON.parse(encodeRequest('7', 'ms.PublishEvent', { dialogId: 'd' }, { metadata: [{ type: 'ExternalId', id: 'x' }] }));
    expect(f).toEqual({ kind: 'req', id: '7', type: 'ms.PublishEvent', body: { dialogId: 'd' }, metadata: [{ type: 'ExternalId', id: 'x' }] });
  });
  it('InitConnection carries headers and no body', () => {
    const f = JSON.parse(encodeRequest('0', 'InitConnection', undefined, { headers: [{ type: '.ams.headers.ConsumerAuthentication', jwt: 'j' }] }));
    expect(f.body).toBeUndefined();
    expect(f.headers[0].jwt).toBe('j');
  });
  it('decodes responses, treating a missing code as 200 and numeric reqIds as strings', () => {
    expect(decodeFrame('{"kind":"resp","reqId":3,"type":"x","body":1}')).toEqual({ kind: 'resp', reqId: '3', code: 200, type: 'x', body: 1 });
    expect(decodeFrame('{"kind":"notification","type":"n","body":{}}')).toEqual({ kind: 'notification', type: 'n', body: {} });
    expect(decodeFrame('nope').kind).toBe('invalid');
    expect(decodeFrame('[1]').kind).toBe('invalid');
    expect(decodeFrame('{"kind":"resp"}').kind).toBe('invalid');
    expect(decodeFrame('{"kind":"other"}').kind).toBe('other');
  });
  it('maps internal and public notification names to one key', () => {
    expect(normType('.ams.aam.ExConversationChangeNotification')).toBe(normType('cqm.ExConversationChangeNotification'));
    expect(normType('.ams.ms.OnlineEventDistribution')).toBe('MessagingEvent');
    expect(normType('ms.MessagingEventNotification')).toBe('MessagingEvent');
    expect(normType('.ams.routing.RoutingTaskNotification')).toBe('RoutingTask');
    expect(normType('something.else')).toBe('something.else');
  });
});

describe('Correlator', () => {
  it('resolves by reqId and rejects codes above 399 with the server message', async () => {
    const c = new Correlator(1000);
    const a = c.track('1', 'a');
    const b = c.track('2', 'b');
    expect(c.settle({ reqId: '2', code: 400, type: 'b', body: { error: { message: 'bad dialog' } } })).toBe(true);
    expect(c.settle({ reqId: '1', code: 200, type: 'a', body: { ok: 1 } })).toBe(true);
    expect(c.settle({ reqId: '1', code: 200, type: 'a', body: {} })).toBe(false);
    await expect(a).resolves.toEqual({ ok: 1 });
    await expect(b).rejects.toBeInstanceOf(ProtocolError);
    await expect(b).rejects.toThrow(/bad dialog/i);
    expect(c.size).toBe(0);
  });
  it('times out and fails all on close', async () => {
    vi.useFakeTimers();
    const c = new Correlator(50);
    const p = c.track(c.nextId(), '.GetClock');
    const q = c.track(c.nextId(), 'x');
    vi.advanceTimersByTime(60);
    await expect(p).rejects.toThrow(/timed out/);
    await expect(q).rejects.toThrow(/timed out/);
    const r = c.track(c.nextId(), 'y');
    c.failAll('closed');
    await expect(r).rejects.toThrow('closed');
    vi.useRealTimers();
  });
  it('hands out increasing ids', () => {
    const c = new Correlator();
    expect([c.nextId(), c.nextId()]).toEqual(['1', '2']);
  });
});

const botMsg: EventRecord = {
  sequence: 2,
  dialogId: 'c1',
  originatorId: 'bot',
  originatorMetadata: { role: 'ASSIGNED_AGENT' },
  event: {
    type: 'ContentEvent',
    contentType: 'text/plain',
    message: 'Pick one',
    quickReplies: {
      type: 'quickReplies',
      itemsPerRow: 8,
      replies: [
        { type: 'button', title: 'Billing', click: { actions: [{ type: 'publishText', text: 'billing please' }], metadata: [{ type: 'ExternalId', id: 'b' }] } },
        { type: 'button', title: 'Other', click: { actions: [{ type: 'link', uri: 'https://x' }] } },
      ],
    },
  },
  metadata: [
    { type: 'BotResponse', intents: [{ id: 'billing', name: 'Billing', confidence: 0.92 }], businessCases: ['bc'] },
    { type: 'ActionReason', reason: 'escalated_by_bot' },
  ],
};

describe('records', () => {
  it('reads records from both notification shapes and QueryMessages arrays', () => {
    expect(recordsOf({ changes: [{ sequence: 1, event: {} }], dialogId: 'd' })[0].dialogId).toBe('d');
    expect(recordsOf({ dialogId: 'd', sequence: 3, event: { type: 'ContentEvent' } })).toHaveLength(1);
    expect(recordsOf([{ sequence: 0 }, { sequence: 1 }])).toHaveLength(2);
    expect(recordsOf(null)).toEqual([]);
    expect(recordsOf({ subscriptionId: 'x' })).toEqual([]);
  });
  it('extracts quick replies with the publishText text', () => {
    const q = quickRepliesOf(botMsg);
    expect(q.map((x) => [x.title, x.text])).toEqual([
      ['Billing', 'billing please'],
      ['Other', 'Other'],
    ]);
    expect(q[0].metadata).toEqual([{ type: 'ExternalId', id: 'b' }]);
    const inRich: EventRecord = { event: { type: 'RichContentEvent', content: { message: 'hi', quickReplies: botMsg.event!.quickReplies } } };
    expect(quickRepliesOf(inRich)).toHaveLength(2);
    expect(textOf(inRich)).toBe('hi');
  });
  it('reads intents, escalation reasons and audience', () => {
    const i = insightOf(botMsg);
    expect(i.intents).toEqual([{ id: 'billing', name: 'Billing', confidence: 0.92 }]);
    expect(i.reasons).toEqual(['escalated_by_bot']);
    expect(i.businessCases).toEqual(['bc']);
    expect(insightOf({ metadata: { type: 'BotResponse', intents: { id: 'x', confidenceScore: 0.5 } } as unknown as unknown[] }).intents[0].confidence).toBe(0.5);
    expect(isPrivate({ messageAudience: 'AGENTS_AND_MANAGERS' })).toBe(true);
    expect(isPrivate(botMsg)).toBe(false);
  });
  it('reads rich content from content or message', () => {
    expect(richContentOf({ event: { type: 'RichContentEvent', content: { type: 'vertical' } } })).toEqual({ type: 'vertical' });
    expect(richContentOf({ event: { type: 'RichContentEvent', message: { type: 'vertical' } } })).toEqual({ type: 'vertical' });
    expect(richContentOf(botMsg)).toBeNull();
  });
  it('merges by sequence without duplicates, keeping order', () => {
    const m = mergeRecords([{ sequence: 2, event: { message: 'old' } }, { sequence: 0 }], [{ sequence: 1 }, { sequence: 2, event: { message: 'new' } }]);
    expect(m.map((r) => r.sequence)).toEqual([0, 1, 2]);
    expect(m[2].event?.message).toBe('new');
  });
});

describe('conversations and routing', () => {
  it('reads the internal agent-socket shape', () => {
    const [c] = conversationsOf({
      changes: [
        {
          type: 'UPSERT',
          result: {
            convId: 'c1',
            effectiveTTR: 123,
            conversationDetails: {
              skillId: '5',
              state: 'OPEN',
              startTs: 1000,
              participants: { CONSUMER: ['u1'], ASSIGNED_AGENT: ['acc.1001'] },
              participantsPId: { CONSUMER: ['u1'], ASSIGNED_AGENT: ['pid'] },
              dialogs: [{ dialogId: 'c1', participantsDetails: [] }],
              ttr: { ttrType: 'URGENT', value: 300 },
            },
          },
        },
      ],
    });
    expect(c).toMatchObject({ convId: 'c1', skillId: '5', consumerId: 'u1', assignedAgents: ['acc.1001'], ttrType: 'URGENT', ttrValue: 300, effectiveTTR: 123, deleted: false });
  });
  it('reads the public shape and DELETE changes', () => {
    const [c, d] = conversationsOf({
      changes: [
        { type: 'UPSERT', result: { convId: 'c2', conversationDetails: { state: 'CLOSE', participants: [{ id: 'u', role: 'CONSUMER' }, { id: 'a', role: 'ASSIGNED_AGENT' }], closeReason: 'AGENT' } } },
        { type: 'DELETE', result: { convId: 'c3', conversationDetails: { participants: {}, participantsPId: {} } } },
      ],
    });
    expect(c).toMatchObject({ convId: 'c2', state: 'CLOSE', consumerId: 'u', assignedAgents: ['a'], closeReason: 'AGENT' });
    expect(d.deleted).toBe(true);
    expect(conversationsOf({ changes: [{ type: 'UPSERT', result: {} }] })).toEqual([]);
  });
  it('reads routing tasks and finds the waiting ring', () => {
    const [t] = routingTasksOf({ changes: [{ type: 'UPSERT', result: { conversationId: 'c1', skillId: '5', ringsDetails: [{ ringId: 'r0', ringState: 'CANCELLED' }, { ringId: 'r1', ringState: 'WAITING', ringExpirationTs: 9 }] } }] });
    expect(waitingRing(t)).toEqual({ ringId: 'r1', ringState: 'WAITING', ringExpirationTs: 9 });
    const [u] = routingTasksOf({ changes: [{ type: 'DELETE', result: { ringsDetails: [] } }] });
    expect(u.deleted).toBe(true);
    expect(waitingRing(u)).toBeUndefined();
  });
});

describe('errors in words', () => {
  it('never shows wire type names and says what kind of failure it was', () => {
    const m = protocolErrorMessage(400, '.ReqBody$StringResp', 'conversation is closed');
    expect(m).toBe('The server refused the request: Conversation is closed.');
    expect(m).not.toMatch(/ReqBody|StringResp/);
    expect(protocolErrorMessage(403, '.ams.cm.UpdateConversationField', { error: { message: 'only the assigned agent may close it' } })).toBe('Not allowed: Only the assigned agent may close it.');
    expect(inWords(503, '')).toBe('The server could not do it.');
    expect(inWords(429, 'login attempts are throttled.')).toBe('Too many requests; wait a moment and try again: Login attempts are throttled.');
  });
});

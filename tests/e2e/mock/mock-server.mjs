// A development stand-in for `parley serve --demo`, written from ../../shared/API.md and the
// messaging-protocol notes. It exists so the console can be exercised before the C++ server is
// ready; it is NOT a test of the server and no CTest runs against it. Usage:
//   node mock/mock-server.mjs [port]      (serves ../../web/dist with an SPA fallback)
// Prints the same JSON lines as `parley serve --demo` ({"event":"listening"}, {"event":"demo"}).

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.resolve(here, '../../../web/dist');
const ACC = 'demo';
const id = () => crypto.randomUUID();
const now = () => Date.now();

const skills = [{ id: '1', name: 'bot' }, { id: '2', name: 'human' }];
let nextSkill = 3;
const users = [
  { id: '1000', pid: id(), loginName: 'admin', password: 'admin-pass', roles: ['ADMIN'], type: 'HUMAN', skills: [], maxOpenConversations: 10 },
  { id: '1001', pid: id(), loginName: 'agent', password: 'agent-pass', roles: ['AGENT'], type: 'HUMAN', skills: ['2'], maxOpenConversations: 10 },
];
let nextUser = 1002;
const sessions = new Map();
const TEMPLATE = `function lambda(input, callback) {\n  callback(null, { messages: ['You said: ' + input.payload.message] });\n}\n`;
const SAMPLE = { headers: [], payload: { message: 'hi', convId: 'c1', context: { lpEvent: {}, lpSdes: {} } } };
const functions = new Map();
const secrets = new Set();
let allowlist = [];
const bots = new Map();
const convs = new Map();
const agentSockets = new Set();
const consumerSockets = new Set();

const send = (res, status, body) => {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(body === undefined ? '' : JSON.stringify(body));
};
const err = (res, status, code, message) => send(res, status, { error: { code, message } });
const readBody = (req) => new Promise((r) => { let b = ''; req.on('data', (c) => (b += c)); req.on('end', () => { try { r(b ? JSON.parse(b) : {}); } catch { r(null); } }); });
const fnJson = (f) => ({ ...f, eventId: f.event, implementation: { code: f.code, environmentVariables: f.environmentVariables } });

function runLambda(code, input, timeoutMs = 5000) {
  return new Promise((resolve) => {
    const logs = [];
    const log = (level) => (message, extras) => logs.push({ level, message: String(message), extras: extras ?? [], timestamp: now() });
    const t0 = performance.now();
    const done = (error, result) => resolve({ error, result, logs, durationMs: performance.now() - t0 });
    try {
      const ctx = vm.createContext({ console: { debug: log('Debug'), info: log('Info'), warn: log('Warn'), error: log('Error'), log: log('Info') }, setTimeout, process: { env: {} } });
      vm.runInContext(code, ctx, { timeout: timeoutMs });
      const timer = setTimeout(() => done({ code: 'com.liveperson.faas.handler.executiontime-exceeded', message: 'callback not called in time' }), timeoutMs);
      ctx.lambda(input, (e, r) => { clearTimeout(timer); e ? done({ code: 'com.liveperson.faas.handler.custom-failure', message: String(e.message ?? e) }) : done(null, r); });
    } catch (e) {
      done({ code: 'com.liveperson.faas.handler.runtime-exception', message: String(e.message) });
    }
  });
}

// ---- conversations
function details(c, forAgent) {
  const agents = c.agent ? [forAgent ? `${ACC}.${c.agent}` : users.find((u) => u.id === c.agent)?.pid ?? c.agent] : [];
  return {
    convId: c.id, effectiveTTR: c.ttrDue,
    conversationDetails: {
      skillId: c.skill, state: c.state, stage: c.state, startTs: c.startTs, endTs: c.endTs ?? 0, closeReason: c.closeReason,
      participants: { CONSUMER: [c.consumer], ASSIGNED_AGENT: agents }, participantsPId: { CONSUMER: [c.consumer], ASSIGNED_AGENT: agents },
      dialogs: [{ dialogId: c.id, dialogType: 'MAIN', channelType: 'MESSAGING', state: c.state, participantsDetails: [] }],
      ttr: { ttrType: 'NORMAL', value: 120 }, brandId: ACC,
    },
  };
}
function notifyConv(c) {
  for (const s of agentSockets) s.note('.ams.aam.ExConversationChangeNotification', { subscriptionId: 's', changes: [{ type: 'UPSERT', result: details(c, true) }] });
  for (const s of consumerSockets) if (s.consumer === c.consumer) s.note('cqm.ExConversationChangeNotification', { subscriptionId: 's', changes: [{ type: 'UPSERT', result: details(c, false) }] });
  notifyTasks(c);
}
function notifyTasks(c) {
  const waiting = c.state === 'OPEN' && !c.agent && c.skill !== botSkillOf(c);
  for (const s of agentSockets) {
    const u = users.find((x) => x.id === s.userId);
    if (!u || !u.skills.includes(c.skill)) continue;
    s.note('.ams.routing.RoutingTaskNotification', { subscriptionId: 't', changes: [{ type: waiting ? 'UPSERT' : 'DELETE', result: { conversationId: c.id, consumerId: c.consumer, skillId: c.skill, ringsDetails: waiting ? [{ ringId: `${c.id}:ring`, ringState: 'WAITING', ringExpirationTs: now() + 60000 }] : [] } }] });
  }
}
const botSkillOf = () => null;
function publish(c, rec) {
  if (rec.event.type !== 'ChatStateEvent') { rec.sequence = c.events.length; c.events.push(rec); }
  rec.serverTimestamp = now(); rec.dialogId = c.id; rec.conversationId = c.id;
  for (const s of agentSockets) s.note('.ams.ms.OnlineEventDistribution', rec);
  for (const s of consumerSockets) if (s.consumer === c.consumer && s.subs.has(c.id) && rec.messageAudience !== 'AGENTS_AND_MANAGERS') s.note('ms.MessagingEventNotification', { changes: [rec] });
  return rec.sequence;
}
async function botTurn(c, text) {
  const bot = [...bots.values()].find((b) => b.status === 'ONLINE' && b.skills.includes(c.skill));
  if (!bot || c.agent) return;
  const f = functions.get(bot.functionUuid);
  const started = now();
  const r = await runLambda(f.code, { timestamp: now(), headers: [], payload: { message: text, convId: c.id, context: { lpEvent: {}, lpSdes: {} } } });
  const actions = [];
  const botMeta = (ctx) => (ctx?.intentId ? [{ type: 'BotResponse', intents: [{ id: ctx.intentId, name: ctx.intentName, confidence: ctx.confidenceScore }] }] : []);
  const from = { originatorId: `bot-${bot.id}`, originatorMetadata: { id: `bot-${bot.id}`, role: 'ASSIGNED_AGENT' } };
  if (r.error) { bot.turns.unshift({ turnId: id(), ts: started, conversationId: c.id, outcome: 'ERROR', error: r.error.message, actions: [], timings: { invokeMs: r.durationMs } }); return; }
  const ctx = r.result.context ?? {};
  for (const m of r.result.messages ?? []) {
    if (typeof m === 'string') publish(c, { ...from, event: { type: 'ContentEvent', contentType: 'text/plain', message: m }, metadata: botMeta(ctx) });
    else if (m.delay !== undefined) { publish(c, { ...from, event: { type: 'ChatStateEvent', chatState: 'COMPOSING' } }); await new Promise((x) => setTimeout(x, m.delay * 1000)); publish(c, { ...from, event: { type: 'ChatStateEvent', chatState: 'ACTIVE' } }); }
    else if (m.structuredContent?.quickReplies) publish(c, { ...from, event: { type: 'ContentEvent', contentType: 'text/plain', message: m.structuredContent.message, quickReplies: m.structuredContent.quickReplies }, metadata: botMeta(ctx) });
    else if (m.structuredContent) publish(c, { ...from, event: { type: 'RichContentEvent', content: m.structuredContent }, metadata: botMeta(ctx) });
    else if (m.text) publish(c, { ...from, messageAudience: m.messageAudience, event: { type: 'ContentEvent', contentType: 'text/plain', message: m.text } });
    actions.push({ type: 'SEND', status: 'OK' });
  }
  if (ctx.action === 'TRANSFER') {
    const sk = skills.find((s) => s.name === ctx.actionParameters?.skill);
    if (sk) { c.skill = sk.id; c.ttrDue = now() + 120000; publish(c, { ...from, messageAudience: 'AGENTS_AND_MANAGERS', event: { type: 'ContentEvent', contentType: 'text/plain', message: 'Escalated by the bot' }, metadata: [...botMeta(ctx), { type: 'ActionReason', reason: 'escalated_by_bot' }] }); notifyConv(c); actions.push({ type: 'TRANSFER', status: 'OK', skill: sk.name }); }
    else actions.push({ type: 'TRANSFER', status: 'REFUSED', reason: 'unknown skill' });
  }
  bot.turns.unshift({ turnId: id(), ts: started, conversationId: c.id, outcome: 'OK', input: { message: text }, response: r.result, actions, timings: { invokeMs: r.durationMs, totalMs: now() - started } });
}

// ---- REST
async function rest(req, res, parts, query, caller) {
  const [res0, rid, sub] = parts;
  const body = ['POST', 'PUT', 'PATCH'].includes(req.method) ? await readBody(req) : {};
  if (body === null) return err(res, 400, 'INVALID', 'body is not JSON');
  const admin = caller.roles.includes('ADMIN');
  const deny = () => err(res, 403, 'FORBIDDEN', 'your role does not allow this');
  if (res0 === 'skills') {
    if (req.method === 'GET') return send(res, 200, skills);
    if (!admin) return deny();
    if (req.method === 'POST') { if (skills.some((s) => s.name === body.name)) return err(res, 409, 'CONFLICT', `skill ${body.name} exists`); const s = { id: String(nextSkill++), name: body.name }; skills.push(s); return send(res, 201, s); }
    if (req.method === 'DELETE') { skills.splice(skills.findIndex((s) => s.id === rid), 1); return send(res, 204); }
  }
  if (res0 === 'users') {
    const pub = (u) => ({ id: u.id, loginName: u.loginName, roles: u.roles, type: u.type, skills: u.skills, maxOpenConversations: u.maxOpenConversations, pid: u.pid });
    if (req.method === 'GET') return send(res, 200, users.map(pub));
    if (!admin) return deny();
    if (req.method === 'POST') { const u = { ...body, id: String(nextUser++), pid: id() }; users.push(u); return send(res, 201, pub(u)); }
    const u = users.find((x) => x.id === rid); if (!u) return err(res, 404, 'NOT_FOUND', 'no such user');
    if (req.method === 'PATCH') { Object.assign(u, body); return send(res, 200, pub(u)); }
    if (req.method === 'DELETE') { users.splice(users.indexOf(u), 1); return send(res, 204); }
  }
  if (res0 === 'functions') {
    if (rid === 'templates') return send(res, 200, { event: query.get('event'), name: 'Default Template', code: TEMPLATE, samplePayload: SAMPLE });
    if (!rid && req.method === 'GET') return send(res, 200, [...functions.values()].map(fnJson));
    if (!rid && req.method === 'POST') { const f = { uuid: id(), name: body.name, description: body.description ?? '', event: body.event, code: body.code ?? TEMPLATE, environmentVariables: [], state: 'Draft', version: 1, logs: [] }; functions.set(f.uuid, f); return send(res, 201, fnJson(f)); }
    const f = functions.get(rid); if (!f) return err(res, 404, 'NOT_FOUND', 'no such function');
    if (!sub && req.method === 'GET') return send(res, 200, fnJson(f));
    if (!sub && req.method === 'PUT') { Object.assign(f, body); f.version++; if (f.state === 'Productive') f.state = 'Modified'; return send(res, 200, fnJson(f)); }
    if (sub === 'deploy') { await new Promise((r) => setTimeout(r, 600)); try { new vm.Script(f.code); f.state = 'Productive'; f.lastDeployment = { deploymentState: 'Productive' }; return send(res, 200, fnJson(f)); } catch (e) { f.state = 'Build Error'; f.lastDeployment = { deploymentState: 'Build Error', deploymentError: { errorCode: 'com.liveperson.faas.build', errorMsg: e.message } }; return err(res, 400, 'SCRIPT_ERROR', `deployment failed: ${e.message}`); } }
    if (sub === 'undeploy') { f.state = 'Draft'; return send(res, 200, fnJson(f)); }
    if (sub === 'invoke') { const r = await runLambda(f.code, { timestamp: now(), headers: body.headers ?? [], payload: body.payload }); return send(res, 200, { result: r.result ?? null, logs: r.logs, durationMs: r.durationMs, ...(r.error ? { error: r.error } : {}) }); }
    if (sub === 'logs') return send(res, 200, f.logs);
    if (sub === 'deployments') return send(res, 200, f.lastDeployment ? [{ ...f.lastDeployment, createdAt: now(), lambdaVersion: f.version }] : []);
  }
  if (res0 === 'secrets') {
    if (req.method === 'GET') return send(res, 200, { keys: [...secrets] });
    if (req.method === 'PUT') { secrets.add(rid); return send(res, 200, {}); }
    if (req.method === 'DELETE') { secrets.delete(rid); return send(res, 204); }
  }
  if (res0 === 'allowlist') { if (req.method === 'PUT') allowlist = body.domains; return send(res, 200, { domains: allowlist }); }
  if (res0 === 'richcontent') {
    const sc = body.structuredContent; const errors = [];
    if (!sc || typeof sc !== 'object') errors.push({ path: '/structuredContent', message: 'must be an object' });
    else if (!['vertical', 'horizontal', 'carousel', 'text', 'button', 'image'].includes(sc.type)) errors.push({ path: '/structuredContent/type', message: `unknown type '${sc.type}'` });
    return send(res, 200, { valid: !errors.length, errors });
  }
  if (res0 === 'bots') {
    if (!rid && req.method === 'GET') return send(res, 200, [...bots.values()]);
    if (!rid && req.method === 'POST') { if (!admin) return deny(); if (!body.disclaimerAccepted) return err(res, 400, 'INVALID', 'disclaimerAccepted must be true'); const b = { ...body, id: String(bots.size + 1), status: 'OFFLINE', turns: [] }; bots.set(b.id, b); return send(res, 201, b); }
    const b = bots.get(rid); if (!b) return err(res, 404, 'NOT_FOUND', 'no such bot');
    if (!sub && req.method === 'GET') return send(res, 200, b);
    if (!sub && req.method === 'PUT') { Object.assign(b, body); return send(res, 200, b); }
    if (sub === 'test-connection') { const f = functions.get(b.functionUuid); if (!f || !/Productive|Modified/.test(f.state)) return send(res, 200, { ok: false, latencyMs: 0, errors: ['the function is not deployed'] }); const r = await runLambda(f.code, { timestamp: now(), headers: [], payload: { message: 'hi', convId: 'test', context: { lpEvent: {}, lpSdes: {} } } }); return send(res, 200, { ok: !r.error, latencyMs: r.durationMs, errors: r.error ? [r.error.message] : [] }); }
    if (sub === 'start') { b.status = 'ONLINE'; return send(res, 200, b); }
    if (sub === 'stop') { b.status = 'OFFLINE'; return send(res, 200, b); }
    if (sub === 'turns') return send(res, 200, b.turns.slice(0, 50));
  }
  return err(res, 404, 'NOT_FOUND', `no route ${req.method} ${parts.join('/')}`);
}

const server = http.createServer(async (req, res) => {
  const u = new URL(req.url, 'http://x');
  const p = u.pathname;
  let m;
  if ((m = p.match(/^\/api\/account\/([^/]+)\/(login|logout|signup|refresh)$/))) {
    const body = await readBody(req);
    if (m[2] === 'signup') return send(res, 200, { jwt: `x.${Buffer.from(JSON.stringify({ sub: id() })).toString('base64url')}.y` });
    if (m[2] === 'logout') return send(res, 200, {});
    const usr = users.find((x) => x.loginName === body?.username && x.password === body?.password);
    if (m[1] !== ACC || !usr) return err(res, 401, 'UNAUTHORIZED', 'wrong account, username or password');
    const bearer = crypto.randomBytes(16).toString('hex');
    sessions.set(bearer, usr);
    return send(res, 200, { bearer, csrf: 'c', config: { userId: usr.id, userPid: usr.pid, loginName: usr.loginName } });
  }
  if ((m = p.match(/^\/api\/v1\/accounts\/([^/]+)\/(.*)$/))) {
    const usr = sessions.get((req.headers.authorization ?? '').replace(/^Bearer /, ''));
    if (!usr) return err(res, 401, 'UNAUTHORIZED', 'log in first');
    return rest(req, res, m[2].split('/').filter(Boolean).map(decodeURIComponent), u.searchParams, usr);
  }
  if (p.startsWith('/api/')) return err(res, 404, 'NOT_FOUND', 'no such endpoint');
  let file = path.join(dist, path.normalize(p).replace(/^(\.\.[/\\])+/, ''));
  if (!file.startsWith(dist) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) file = path.join(dist, 'index.html');
  const types = { '.js': 'text/javascript', '.css': 'text/css', '.html': 'text/html', '.svg': 'image/svg+xml' };
  res.writeHead(200, { 'Content-Type': types[path.extname(file)] ?? 'application/octet-stream' });
  fs.createReadStream(file).pipe(res);
});

const wss = new WebSocketServer({ noServer: true });
server.on('upgrade', (req, sock, head) => {
  const u = new URL(req.url, 'http://x');
  const agent = u.pathname.match(/^\/ws_api\/account\/[^/]+\/messaging\/brand\/([^/]+)$/);
  const consumer = /^\/ws_api\/account\/[^/]+\/messaging\/consumer$/.test(u.pathname);
  const usr = agent ? sessions.get(agent[1]) : null;
  if ((agent && !usr) || (!agent && !consumer)) { sock.write('HTTP/1.1 401 Unauthorized\r\n\r\n'); return sock.destroy(); }
  wss.handleUpgrade(req, sock, head, (ws) => {
    const s = { ws, subs: new Set(), userId: usr?.id, consumer: null, note: (type, body) => ws.readyState === 1 && ws.send(JSON.stringify({ kind: 'notification', type, body })) };
    (agent ? agentSockets : consumerSockets).add(s);
    ws.on('close', () => (agent ? agentSockets : consumerSockets).delete(s));
    ws.on('message', async (raw) => {
      const msg = JSON.parse(String(raw));
      const reply = (code, type, body) => ws.send(JSON.stringify({ kind: 'resp', reqId: msg.id, code, type, body }));
      const t = msg.type.replace(/^\.ams\.(aam|ms|cm|routing)\./, (x, g) => (g === 'aam' ? 'cqm.' : `${g}.`));
      const b = msg.body ?? {};
      if (t === 'InitConnection') { const jwt = msg.headers?.find((x) => x.jwt)?.jwt; s.consumer = JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url')).sub; return reply(200, '.ReqBody$StringResp', 'OK'); }
      if (t === '.GetClock' || t === 'GetClock') return reply(200, '.GetClock$Response', { currentTime: now() });
      if (t === 'routing.SetAgentState') return reply(200, '.ReqBody$StringResp', 'Agent state updated successfully');
      if (t === 'cqm.SubscribeExConversations') {
        reply(200, 'cqm.SubscribeExConversationsResponse', { subscriptionId: 's' });
        for (const c of convs.values()) if (c.state === 'OPEN' && (agent || c.consumer === s.consumer)) s.note(agent ? '.ams.aam.ExConversationChangeNotification' : 'cqm.ExConversationChangeNotification', { subscriptionId: 's', changes: [{ type: 'UPSERT', result: details(c, !!agent) }] });
        return;
      }
      if (t === 'routing.SubscribeRoutingTasks') { reply(200, '.ams.GenericSubscribeResponse', { subscriptionId: 't' }); for (const c of convs.values()) notifyTasks(c); return; }
      if (t === 'cm.ConsumerRequestConversation') {
        const c = { id: id(), consumer: s.consumer, skill: b.skillId ?? '1', state: 'OPEN', startTs: now(), ttrDue: now() + 120000, events: [], agent: null };
        convs.set(c.id, c); reply(200, 'cm.RequestConversationResponse', { conversationId: c.id }); notifyConv(c); return;
      }
      if (t === 'ms.SubscribeMessagingEvents') { const c = convs.get(b.dialogId); s.subs.add(b.dialogId); reply(200, 'GenericSubscribeResponse', {}); if (c) s.note('ms.MessagingEventNotification', { changes: c.events.filter((e) => e.messageAudience !== 'AGENTS_AND_MANAGERS') }); return; }
      if (t === 'ms.QueryMessages') { const c = convs.get(b.dialogId); return reply(200, '.ams.ms.QueryMessages$Response', c ? c.events : []); }
      if (t === 'ms.PublishEvent') {
        const c = convs.get(b.dialogId); if (!c || c.state !== 'OPEN') return reply(400, 'ms.PublishEventResponse', { error: { message: 'conversation is closed' } });
        const pid = agent ? usr.pid : s.consumer;
        const seq = publish(c, { originatorId: agent ? `${ACC}.${usr.id}` : s.consumer, originatorPId: pid, originatorMetadata: { id: pid, role: agent ? 'ASSIGNED_AGENT' : 'CONSUMER' }, messageAudience: b.messageAudience ?? 'ALL', event: b.event, metadata: msg.metadata ?? [] });
        reply(200, 'ms.PublishEventResponse', { sequence: seq });
        if (!agent && b.event.type === 'ContentEvent') void botTurn(c, b.event.message);
        return;
      }
      if (t === 'routing.UpdateRingState') { const c = convs.get(b.ringId.split(':')[0]); if (!c) return reply(404, 'x', 'no ring'); c.agent = usr.id; notifyConv(c); return reply(200, '.ReqBody$StringResp', 'Ring state updated successfully'); }
      if (t === 'cm.UpdateConversationField') {
        const c = convs.get(b.conversationId);
        for (const f of [].concat(b.conversationField)) {
          if (f.field === 'ConversationStateField') { c.state = 'CLOSE'; c.endTs = now(); c.closeReason = agent ? 'AGENT' : 'CONSUMER'; }
          if (f.field === 'ParticipantsChange' && f.type === 'REMOVE') c.agent = null;
          if (f.field === 'Skill') { c.skill = f.skill; c.ttrDue = now() + 120000; }
        }
        notifyConv(c); return reply(200, '.ReqBody$StringResp', 'OK');
      }
      reply(400, 'x', { error: { message: `unsupported ${msg.type}` } });
    });
  });
});

server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  const { port } = server.address();
  console.log(JSON.stringify({ event: 'listening', http: `http://127.0.0.1:${port}` }));
  console.log(JSON.stringify({ event: 'demo', account: ACC, admin: { username: 'admin', password: 'admin-pass' }, agent: { username: 'agent', password: 'agent-pass' }, console: `http://127.0.0.1:${port}/` }));
});

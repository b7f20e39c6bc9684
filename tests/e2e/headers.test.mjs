// Every kind of response `parley serve` sends carries the security headers (a strict
// Content-Security-Policy, X-Content-Type-Options: nosniff, Referrer-Policy, X-Frame-Options),
// over HTTP and HTTPS; in Chromium the policy holds: no inline script, no eval, no inline style
// element, no framing, and the console still works under it (its pages load without a single
// policy violation).
//
//   PARLEY_BIN=build/default/src/app/parley node --test tests/e2e/headers.test.mjs

import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { after, before, describe, test } from 'node:test';
import { ensureWebBuilt, startBrowser, startServer, webDist } from './harness.mjs';

let server;
let browser;
let ca;

// One request; resolves {status, headers, body}.
function request(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const lib = u.protocol === 'https:' ? https : http;
    const req = lib.request({ method, hostname: u.hostname, port: u.port, path: u.pathname + u.search, headers, ca }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

function expectHeaders(r, what, base) {
  const csp = r.headers['content-security-policy'];
  assert.ok(csp, `${what}: Content-Security-Policy missing (status ${r.status})`);
  for (const d of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'", "connect-src 'self'"]) {
    assert.ok(csp.includes(d), `${what}: ${d} missing from ${csp}`);
  }
  assert.ok(!/unsafe-inline|unsafe-eval/.test(csp), `${what}: ${csp}`);
  const wsOrigin = `${base.startsWith('https') ? 'wss' : 'ws'}://${new URL(base).host}`;
  assert.ok(csp.includes(wsOrigin), `${what}: connect-src names ${wsOrigin}: ${csp}`);
  assert.equal(r.headers['x-content-type-options'], 'nosniff', `${what}: nosniff`);
  assert.equal(r.headers['referrer-policy'], 'no-referrer', `${what}: Referrer-Policy`);
  assert.equal(r.headers['x-frame-options'], 'DENY', `${what}: X-Frame-Options`);
}

before(async () => {
  ensureWebBuilt();
  server = await startServer();
  ca = readFileSync(server.listening.ca);
  browser = await startBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

describe('security headers', () => {
  test('on every kind of response, over HTTP and HTTPS', async () => {
    const acc = server.demo.account;
    const asset = readdirSync(`${webDist}/assets`).find((f) => f.endsWith('.js'));
    for (const base of [server.listening.http, server.listening.https]) {
      const login = await request(`${base}/api/account/${acc}/login?v=1.3`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(server.demo.admin) });
      assert.equal(login.status, 200);
      const bearer = JSON.parse(login.body).bearer;
      const auth = { Authorization: `Bearer ${bearer}` };
      const cases = [
        ['console index', '/'],
        ['SPA route', '/agent'],
        ['static asset', `/assets/${asset}`],
        ['healthz', '/healthz'],
        ['metrics', '/metrics'],
        ['CSDS', `/api/account/${acc}/service/baseURI.json?version=1.0`],
        ['REST 200', `/api/v1/accounts/${acc}/skills`, { headers: auth }],
        ['REST 401', `/api/v1/accounts/${acc}/skills`],
        ['REST 404', `/api/v1/accounts/${acc}/nonsense`, { headers: auth }],
        ['REST 400', `/api/v1/accounts/${acc}/skills`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: '{not json' }],
        ['login 401', `/api/account/${acc}/login?v=1.3`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"username":"x","password":"y"}' }],
        ['login 200', `/api/account/${acc}/login?v=1.3`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(server.demo.admin) }],
        ['signup', `/api/account/${acc}/signup`, { method: 'POST' }],
        ['413', `/api/v1/accounts/${acc}/skills`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: 'x'.repeat((1 << 20) + 1) }],
        ['refused WebSocket upgrade', `/ws_api/account/${acc}/messaging/brand/not-a-bearer?v=2.1`, { headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' } }],
      ];
      const statuses = {};
      for (const [what, path, opts] of cases) {
        const r = await request(`${base}${path}`, opts);
        statuses[what] = r.status;
        expectHeaders(r, `${what} (${base})`, base);
      }
      assert.equal(statuses['REST 401'], 401);
      assert.equal(statuses['REST 404'], 404);
      assert.equal(statuses['413'], 413);
      assert.ok(statuses['refused WebSocket upgrade'] >= 400, JSON.stringify(statuses));
    }
  });

  test('in Chromium the policy holds and the console runs under it', async () => {
    const page = await browser.ctx.newPage();
    const violations = [];
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) violations.push(m.text());
    });
    await page.goto(`${server.listening.http}/login`);
    await page.getByLabel('Account id').waitFor();
    assert.deepEqual(violations, [], 'the login page loads without a policy violation');
    // Script a payload would add: inline script, inline handlers, eval, an inline <style>.
    const r = await page.evaluate(async () => {
      const s = document.createElement('script');
      s.textContent = 'window.inlineRan = 1';
      document.body.append(s);
      const d = document.createElement('div');
      d.innerHTML = '<img src="data:," onerror="window.handlerRan = 1">';
      document.body.append(d);
      const st = document.createElement('style');
      st.textContent = 'body { background: rgb(1, 2, 3) }';
      document.head.append(st);
      const f = document.createElement('script');
      f.textContent = 'try { eval("window.evalRan = 1") } catch (e) {}';
      document.body.append(f);
      await new Promise((res) => setTimeout(res, 500));
      return { inline: window.inlineRan, handler: window.handlerRan, eval: window.evalRan, bg: getComputedStyle(document.body).backgroundColor };
    });
    assert.equal(r.inline, undefined, 'inline script ran');
    assert.equal(r.handler, undefined, 'an inline event handler ran');
    assert.equal(r.eval, undefined, 'eval ran');
    assert.notEqual(r.bg, 'rgb(1, 2, 3)', 'an inline <style> applied');
    assert.ok(violations.length >= 3, `the browser reported the refusals: ${violations.join('\n')}`);
    await page.close();
  });
});

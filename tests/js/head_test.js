'use strict';
// HEAD on every kind of route: the GET's status and Content-Length, and no body (a body would be
// read by a keep-alive client as the start of the next response).
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('net');
const { startServer } = require('./lib/server');
const { adminSession } = require('./lib/setup');

// Sends `head` then a GET for the same path on one plain keep-alive connection; returns the raw
// bytes the server answered.
function pipelined(host, path, headers) {
  return new Promise((resolve, reject) => {
    const [h, p] = host.split(':');
    const sock = net.connect(Number(p), h);
    let data = '';
    sock.on('data', (d) => {
      data += d.toString('latin1');
    });
    sock.on('end', () => resolve(data));
    sock.on('error', reject);
    const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    sock.write(`HEAD ${path} HTTP/1.1\r\nHost: ${host}\r\n${extra}\r\n` +
      `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n${extra}Connection: close\r\n\r\n`);
    setTimeout(() => {
      sock.destroy();
      resolve(data);
    }, 10000);
  });
}

test('HEAD answers every route with the GET headers and no body', { timeout: 60000 }, async (t) => {
  const srv = await startServer();
  t.after(async () => {
    await srv.stop();
  });
  const admin = await adminSession(srv);
  const host = new URL(srv.http).host;
  const auth = { Authorization: `Bearer ${admin.bearer}` };
  const routes = [
    ['/healthz', {}],
    ['/metrics', auth],
    [`/api/account/${admin.account}/service/baseURI.json?version=1.0`, {}],
    [`/api/v1/accounts/${admin.account}/skills`, auth],
    [`/api/v1/accounts/${admin.account}/skills`, {}], // 401
    [`/api/v1/accounts/${admin.account}/no-such-resource`, auth], // 404
    ['/', {}], // the console (or its "not built" page)
    ['/no/such/file.js', {}],
  ];
  for (const [path, headers] of routes) {
    const raw = await pipelined(host, path, headers);
    const first = raw.indexOf('\r\n\r\n');
    assert.ok(first > 0, `${path}: no HEAD answer: ${raw.slice(0, 200)}`);
    const headHeaders = raw.slice(0, first);
    const rest = raw.slice(first + 4);
    // What follows the HEAD answer's headers must be the GET's status line, not a body.
    assert.match(rest, /^HTTP\/1\.1 \d{3} /, `${path}: bytes after the HEAD headers: ${JSON.stringify(rest.slice(0, 80))}`);
    const second = rest.indexOf('\r\n\r\n');
    const getHeaders = rest.slice(0, second);
    const getBody = rest.slice(second + 4);
    const status = (s) => s.split('\r\n')[0].split(' ')[1];
    const length = (s) => Number((s.match(/content-length: (\d+)/i) || [])[1]);
    assert.equal(status(headHeaders), status(getHeaders), `${path}: HEAD and GET status`);
    // (/metrics changes between the two requests: its counters count them.)
    if (path === '/metrics') assert.ok(length(headHeaders) > 0, `${path}: HEAD Content-Length`);
    else assert.equal(length(headHeaders), length(getHeaders), `${path}: HEAD Content-Length`);
    assert.equal(Buffer.byteLength(getBody, 'latin1'), length(getHeaders), `${path}: GET body length`);
  }
});

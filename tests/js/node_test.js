'use strict';
// Cluster-mode naming on one node: `--node` and `--public-url` (the listening line's "node", what
// CSDS answers, the demo line's console) and their usage errors.
const test = require('node:test');
const assert = require('node:assert/strict');
const os = require('os');
const { spawnSync } = require('child_process');
const { startServer, tempDataDir, PARLEY_BIN } = require('./lib/server');
const { request } = require('./lib/http');

async function csdsHosts(srv, account) {
  const r = await request('GET', `${srv.http}/api/account/${account}/service/baseURI.json?version=1.0`);
  assert.equal(r.status, 200, r.text);
  return new Set(r.json.baseURIs.map((u) => u.baseURI));
}

test('without --node the node is named by host name and port; CSDS answers the listener', { timeout: 60000 }, async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  assert.equal(srv.node, `${os.hostname()}:${new URL(srv.http).port}`);
  assert.deepEqual(await csdsHosts(srv, srv.demo.account), new Set([srv.httpsHost]));
  assert.equal(srv.demo.console, `${srv.https}/`);
});

test('--node names the node; --public-url is what CSDS and the demo console say', { timeout: 60000 }, async (t) => {
  const srv = await startServer({ args: ['--node', 'node-a', '--public-url', 'https://chat.example.test:9443'] });
  t.after(() => srv.stop());
  assert.equal(srv.node, 'node-a');
  assert.deepEqual(await csdsHosts(srv, srv.demo.account), new Set(['chat.example.test:9443']));
  assert.equal(srv.demo.console, 'https://chat.example.test:9443/');
});

test('a bad --public-url or --node is a usage error', { timeout: 30000 }, () => {
  for (const args of [['--public-url', 'chat.example.test'], ['--public-url', 'https://h/path'],
    ['--node', 'has space'], ['--node', 'x'.repeat(129)]]) {
    const r = spawnSync(PARLEY_BIN, ['serve', '--data', tempDataDir('node'), '--listen', '127.0.0.1:0',
      '--tls-listen', '127.0.0.1:0', ...args], { encoding: 'utf8', timeout: 20000 });
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /parley: --(public-url|node): /);
  }
});

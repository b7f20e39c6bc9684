'use strict';
// Idempotent publish: a consumer's ms.PublishEvent carrying an idempotency key in its envelope
// metadata ({"type":"IdempotencyKey","key":...}) is stored once however often it is resent — on
// the same socket, and on a new socket after a reconnect — and each resend gets the first one's
// sequence; the demo bot answers it once. A bad key is refused with a 400 that says why, and
// nothing is stored.
const test = require('node:test');
const assert = require('node:assert/strict');
const { startServer, rest } = require('./lib/server');
const { Consumer } = require('./lib/consumer');
const { adminSession } = require('./lib/setup');

test('a publish resent with its idempotency key is stored and answered once', { timeout: 120000 }, async (t) => {
  const srv = await startServer();
  const sockets = [];
  t.after(async () => {
    for (const s of sockets) s.close();
    const r = await srv.stop();
    assert.equal(r.code, 0, `server exit code on SIGTERM: ${JSON.stringify(r)}\n${srv.logs().slice(-3000)}`);
  });
  const admin = await adminSession(srv);
  const acc = admin.account;
  const consumer = new Consumer(srv, acc);
  sockets.push(consumer);
  await consumer.signup();
  await consumer.connect();
  const created = await consumer.request('cm.ConsumerRequestConversation',
    { skillId: srv.demo.skills.general, channelType: 'MESSAGING', ttrDefName: 'NORMAL' });
  assert.equal(created.code, 200, JSON.stringify(created));
  const convId = created.body.conversationId;
  assert.equal((await consumer.request('ms.SubscribeMessagingEvents', { dialogId: convId, fromSeq: 0 })).code, 200);

  const publish = (sock, message, metadata) => sock.request('ms.PublishEvent',
    { dialogId: convId, event: { type: 'ContentEvent', contentType: 'text/plain', message } },
    metadata === undefined ? {} : { metadata });
  const keyed = (key) => [{ type: 'ExternalId', id: 'card-1' }, { type: 'IdempotencyKey', key }];
  const echoes = (sock, text) => sock.contentRecords()
    .filter((r) => r.originatorMetadata.role === 'ASSIGNED_AGENT' && String(r.event.message).includes(text));

  const first = await publish(consumer, 'once please', keyed('0f8fad5b-d9cb-469f-a165-70867728950e'));
  assert.equal(first.code, 200, JSON.stringify(first));
  const again = await publish(consumer, 'once please', keyed('0f8fad5b-d9cb-469f-a165-70867728950e'));
  assert.equal(again.code, 200, JSON.stringify(again));
  assert.equal(again.body.sequence, first.body.sequence, 'the resend gets the first sequence');

  // A new socket of the same consumer (the client reconnected) resends it once more.
  const back = new Consumer(srv, acc);
  sockets.push(back);
  back.jwt = consumer.jwt;
  await back.connect();
  const third = await publish(back, 'once please', keyed('0f8fad5b-d9cb-469f-a165-70867728950e'));
  assert.equal(third.code, 200, JSON.stringify(third));
  assert.equal(third.body.sequence, first.body.sequence);

  // Bad keys: 400 with a reason, nothing stored.
  const long = await publish(consumer, 'bad', [{ type: 'IdempotencyKey', key: 'k'.repeat(65) }]);
  assert.equal(long.code, 400, JSON.stringify(long));
  assert.match(JSON.stringify(long.body), /idempotency key is 65 characters long; at most 64/);
  const chars = await publish(consumer, 'bad', { type: 'IdempotencyKey', key: 'a key' });
  assert.equal(chars.code, 400, JSON.stringify(chars));
  assert.match(JSON.stringify(chars.body), /character that is not allowed/);
  const noKey = await publish(consumer, 'bad', [{ type: 'IdempotencyKey' }]);
  assert.equal(noKey.code, 400, JSON.stringify(noKey));
  const two = await publish(consumer, 'bad', [{ type: 'IdempotencyKey', key: 'a' }, { type: 'IdempotencyKey', key: 'b' }]);
  assert.equal(two.code, 400, JSON.stringify(two));
  assert.match(JSON.stringify(two.body), /more than one IdempotencyKey/);

  // Without a key (as every LivePerson client sends) a resend is a message of its own; the bot
  // answers in order, so once it answered the last one it has answered everything before.
  const plain1 = await publish(consumer, 'no key');
  const plain2 = await publish(consumer, 'no key');
  assert.equal(plain1.code, 200);
  assert.equal(plain2.code, 200);
  assert.notEqual(plain1.body.sequence, plain2.body.sequence);
  const last = await publish(consumer, 'the last one', keyed('last'));
  assert.equal(last.code, 200);
  await consumer.waitFor((c) => echoes(c, 'the last one').length > 0, 'the answer to the last message', 20000);
  assert.equal(echoes(consumer, 'once please').length, 1, 'the bot answered the keyed message once');
  assert.equal(echoes(consumer, 'no key').length, 2);

  const msgs = await rest(srv, admin.bearer, 'GET', acc, `conversations/${convId}/messages`);
  assert.equal(msgs.status, 200, msgs.text);
  const fromConsumer = msgs.json.filter((m) => m.event.type === 'ContentEvent' && m.role === 'CONSUMER');
  assert.deepEqual(fromConsumer.map((m) => m.event.message), ['once please', 'no key', 'no key', 'the last one']);
  const stored = fromConsumer[0];
  assert.equal(stored.sequence, first.body.sequence);
  // The key is not part of the stored metadata; the other entries are.
  assert.deepEqual(stored.metadata, [{ type: 'ExternalId', id: 'card-1' }], JSON.stringify(stored));
});

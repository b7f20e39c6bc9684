'use strict';
// Toolbelt.SDEUtil().addSDEs and GDPRUtil().replaceConversationFiles over the real server, used
// the way LivePerson's documentation examples use them: a function adds engagement attributes to
// a consumer's conversation, reads them back with ConversationUtil.getConversationById(id,
// [SDES, UNAUTH_SDES]) and getSDEsFromConv; the REST conversation shows them to the brand's
// users. Bad input (wrong types, too many, unknown type, a stranger's visitor id, another
// account's conversation) is refused with a clear error and stores nothing. GDPRUtil checks the
// credentials with the server's login (a FAAS_DEVELOPER is refused, an ADMIN passes) and says
// that Parley cannot replace the conversation's files.
const test = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('child_process');
const { startServer, rest, PARLEY_BIN } = require('./lib/server');
const { adminSession, createUser } = require('./lib/setup');
const { Consumer } = require('./lib/consumer');

let srv;
let admin;
let fn;
let consumer;
let convId;

const code = `
const { Toolbelt, ConversationContentTypes } = require('lp-faas-toolbelt');
async function lambda(input, callback) {
  const p = input.payload;
  const sdeUtil = Toolbelt.SDEUtil();
  const conversationUtil = Toolbelt.ConversationUtil();
  try {
    if (p.records) {
      const c = await conversationUtil.getConversationById(p.convId, [ConversationContentTypes.MESSAGE_RECORDS]);
      return callback(null, { records: c.messageRecords.map((r) => ({ type: r.type, file: r.messageData.file })) });
    }
    if (p.gdpr) {
      const conversation = await conversationUtil.getConversationById(p.convId);
      const gdprUtil = Toolbelt.GDPRUtil();
      const shouldReplace = p.onlyPdf ? (filePath) => filePath.endsWith('.pdf') : undefined;
      const replaced = await gdprUtil.replaceConversationFiles(conversation, p.credentials, shouldReplace);
      return callback(null, { replaced });
    }
    if (p.sdes !== undefined) {
      const response = await sdeUtil.addSDEs(p.sdes, p.visitorId, p.convId);
      if (response !== undefined) throw new Error('addSDEs resolved with ' + JSON.stringify(response));
    }
    const contentToRetrieve = [ConversationContentTypes.SDES, ConversationContentTypes.UNAUTH_SDES];
    const conversation = await conversationUtil.getConversationById(p.convId, contentToRetrieve);
    callback(null, { keys: Object.keys(conversation).sort(), sdes: sdeUtil.getSDEsFromConv(conversation) });
  } catch (e) {
    callback(null, { error: { name: e.name, message: e.message, code: e.code } });
  }
}`;

async function invoke(payload) {
  const r = await rest(srv, admin.bearer, 'POST', admin.account, `functions/${fn}/invoke`, { payload });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.error, undefined, r.text);
  return r.json.result;
}

function parley(args) {
  return new Promise((resolve) => {
    execFile(PARLEY_BIN, args, (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr }));
  });
}

async function openConversation(account, context) {
  const c = new Consumer(srv, account);
  await c.signup();
  await c.connect();
  const body = { channelType: 'MESSAGING', ttrDefName: 'NORMAL' };
  if (account === srv.demo.account) body.skillId = srv.demo.skills.human;
  if (context) body.conversationContext = context;
  const r = await c.request('cm.ConsumerRequestConversation', body);
  assert.equal(r.code, 200, JSON.stringify(r));
  return { consumer: c, convId: r.body.conversationId };
}

const personal = { type: 'personal', personal: { contacts: [{ email: 'john.doe@example.com' }] } };
const customer = { type: 'ctmrinfo', info: { cstatus: 'gold', customerId: 'c-77' } };

test.before(async () => {
  srv = await startServer();
  admin = await adminSession(srv);
  const r = await rest(srv, admin.bearer, 'POST', admin.account, 'functions', { name: 'sdes', event: 'no_event', code });
  assert.equal(r.status, 201, r.text);
  fn = r.json.uuid;
  ({ consumer, convId } = await openConversation(srv.demo.account, {
    type: 'SharkContext', lang: 'en-US', visitorId: 'sv-42', sessionId: 'ss-1',
    engagementAttributes: [{ type: 'ctmrinfo', info: { cstatus: 'silver' } }],
  }));
});

test.after(async () => {
  if (consumer) consumer.close();
  if (srv) {
    const r = await srv.stop();
    assert.equal(r.code, 0, `clean exit on SIGTERM; the server's last log lines:\n${srv.logs().slice(-4000)}`);
  }
});

test('a function adds SDEs and reads them back with getConversationById (sdes, unAuthSdes)', async () => {
  const first = await invoke({ convId, visitorId: consumer.consumerId, sdes: [personal] });
  assert.equal(first.error, undefined, JSON.stringify(first));
  // The visitor id the consumer's conversationContext carried works too.
  const second = await invoke({ convId, visitorId: 'sv-42', sdes: [customer] });
  assert.equal(second.error, undefined, JSON.stringify(second));

  assert.deepEqual(second.keys, ['sdes', 'unAuthSdes']);
  const events = second.sdes.sdes.events;
  assert.deepEqual(events.map((e) => e.sdeType), ['PERSONAL_INFO', 'CUSTOMER_INFO'], JSON.stringify(events));
  assert.equal(events[0].personalInfo.personalInfo.contacts[0].email, 'john.doe@example.com');
  assert.equal(events[1].customerInfo.customerInfo.cstatus, 'gold');
  assert.ok(events.every((e) => Number.isInteger(e.serverTimeStamp) && e.serverTimeStamp > 1.6e12), JSON.stringify(events));
  assert.ok(events[0].serverTimeStamp <= events[1].serverTimeStamp, 'newest last');
  // The consumer's own (unauthenticated) attributes from its conversation request.
  const unauth = second.sdes.unAuthSdes.events;
  assert.deepEqual(unauth.map((e) => e.sdeType), ['CUSTOMER_INFO'], JSON.stringify(unauth));
  assert.equal(unauth[0].customerInfo.customerInfo.cstatus, 'silver');
});

test("the brand's users see them in the REST conversation", async () => {
  const r = await rest(srv, admin.bearer, 'GET', admin.account, `conversations/${convId}`);
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.sdes.events.map((e) => e.sdeType), ['PERSONAL_INFO', 'CUSTOMER_INFO'], r.text);
  assert.deepEqual(r.json.unAuthSdes.events.map((e) => e.sdeType), ['CUSTOMER_INFO'], r.text);
});

test('bad input is refused with a clear error and nothing is stored', { timeout: 60000 }, async () => {
  const refused = async (payload, pattern, name = 'Error') => {
    const r = await invoke(payload);
    assert.ok(r.error, `refused: ${JSON.stringify(payload).slice(0, 200)} -> ${JSON.stringify(r)}`);
    assert.equal(r.error.name, name, JSON.stringify(r));
    assert.match(r.error.message, pattern);
  };
  const visitorId = consumer.consumerId;
  await refused({ convId, visitorId, sdes: personal }, /addSDEs expects an array of SDEs/, 'TypeError');
  await refused({ convId, visitorId: 7, sdes: [personal] }, /visitorId as a non-empty string/, 'TypeError');
  await refused({ convId, visitorId, sdes: [{ type: 'bogus' }] }, /sdes\[0\] has unknown type 'bogus'/);
  await refused({ convId, visitorId, sdes: [{ type: 'personal', firstname: 'x' }] }, /object 'personal'/);
  await refused({ convId, visitorId, sdes: Array(21).fill(personal) }, /21 entries; at most 20/);
  await refused({ convId, visitorId, sdes: [] }, /sdes is empty/);
  await refused({ convId, visitorId: 'someone-else', sdes: [personal] }, /is not the visitor of conversation/);
  await refused({ convId: 'no-such-conversation', visitorId, sdes: [personal] }, /is not a conversation of this account/);

  // Another account's conversation, with its own consumer's id: not found from this account.
  const made = await parley(['account', 'create', '--data', srv.dataDir, '--name', 'Other Co', '--id', 'other-co']);
  assert.equal(made.code, 0, made.stderr);
  const other = await openConversation('other-co');
  try {
    await refused({ convId: other.convId, visitorId: other.consumer.consumerId, sdes: [personal] },
      /is not a conversation of this account/);
  } finally {
    other.consumer.close();
  }

  const after = await invoke({ convId });
  assert.deepEqual(after.sdes.sdes.events.map((e) => e.sdeType), ['PERSONAL_INFO', 'CUSTOMER_INFO']);
});

test('GDPRUtil checks the credentials (ADMIN) and says Parley cannot replace the files', { timeout: 60000 }, async () => {
  const file = { type: 'ContentEvent', contentType: 'hosted/file', message: { relativePath: '/v1/AUTH_async-images/photo.png', fileType: 'PNG', caption: 'receipt' } };
  const pub = await consumer.request('ms.PublishEvent', { dialogId: convId, event: file });
  assert.equal(pub.code, 200, JSON.stringify(pub));
  // The conversation shows it as LivePerson's HOSTED_FILE record.
  const conv = await invoke({ convId, records: true });
  assert.deepEqual(conv.records.filter((r) => r.type === 'HOSTED_FILE'),
    [{ type: 'HOSTED_FILE', file: { relativePath: '/v1/AUTH_async-images/photo.png', fileType: 'PNG', caption: 'receipt' } }],
    JSON.stringify(conv));

  const dev = await createUser(srv, admin, { loginName: 'gdpr-dev', type: 'HUMAN', roles: ['FAAS_DEVELOPER'] });
  const admin2 = await createUser(srv, admin, { loginName: 'gdpr-admin', type: 'HUMAN', roles: ['ADMIN'] });
  const gdpr = (credentials, onlyPdf) => invoke({ gdpr: true, convId, credentials, onlyPdf });

  const asDev = await gdpr({ username: dev.loginName, password: dev.password });
  assert.ok(asDev.error, JSON.stringify(asDev));
  assert.match(asDev.error.message, /has roles \[FAAS_DEVELOPER\]; replacing a conversation's files needs ADMIN/);
  assert.equal(asDev.error.code, 'FORBIDDEN');

  const wrong = await gdpr({ username: admin2.loginName, password: 'not-the-password' });
  assert.ok(wrong.error, JSON.stringify(wrong));
  assert.match(wrong.error.message, /the credentials were refused/);

  const asAdmin = await gdpr({ username: admin2.loginName, password: admin2.password });
  assert.ok(asAdmin.error, JSON.stringify(asAdmin));
  assert.match(asAdmin.error.message, /Parley keeps no file storage/);
  assert.match(asAdmin.error.message, /\/v1\/AUTH_async-images\/photo\.png/);

  // Nothing selected (only PDFs, and there are none): FilesReplaced is empty.
  const none = await gdpr({ username: admin2.loginName, password: admin2.password }, true);
  assert.deepEqual(none, { replaced: [] }, JSON.stringify(none));
});

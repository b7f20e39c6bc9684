// LpClient, SDEUtil, GDPRUtil and ConversationUtil's contentToRetrieve, called as the spec's
// examples call them. The test host echoes platform calls, so the result shows what LpClient and
// GDPRUtil sent (addSDEs resolves with nothing), and what each refuses before sending; the
// server side is tested by tests/js/toolbelt_test.js (LpClient) and tests/js/sdes_test.js.
const { Toolbelt, LpServices, ConversationContentTypes, SDETypes } = require('lp-faas-toolbelt');

async function settle(p) {
  try {
    return {value: await p};
  } catch (e) {
    return {name: e.name, message: e.message, statusCode: e.statusCode, code: e.code};
  }
}

async function lambda(input, callback) {
  const lpClient = Toolbelt.LpClient();
  const path = `/api/v1/accounts/${process.env.BRAND_ID}/skills`;
  const get = await settle(lpClient(LpServices.ACCOUNT_CONFIG_READ_ONLY, path));
  const post = await settle(lpClient(LpServices.ACCOUNT_CONFIG_READ_WRITE, path,
                                     {method: 'post', body: {name: 'billing'}, appKeySecretName: 'my-key'}));
  const notOk = await settle(lpClient(LpServices.MESSAGING_HISTORY, path + '?status=404'));
  const noPath = await settle(lpClient(LpServices.MESSAGING_HISTORY));

  const conversationUtil = Toolbelt.ConversationUtil();
  const onlyRecords = await conversationUtil.getConversationById('c-1', [ConversationContentTypes.MESSAGE_RECORDS]);
  const everything = await conversationUtil.getConversationById('c-1');
  const badType = await settle(conversationUtil.getConversationById('c-1', ['bogus']));

  const sdeUtil = Toolbelt.SDEUtil();
  const sdes = sdeUtil.getSDEsFromConv(everything);
  const addSDEs = await settle(sdeUtil.addSDEs([{type: SDETypes.CUSTOMER_INFO, info: {cstatus: 'gold'}}], 'visitor', 'c-1'));
  const addSDEsNotArray = await settle(sdeUtil.addSDEs({type: 'ctmrinfo'}, 'visitor', 'c-1'));
  const addSDEsNoVisitor = await settle(sdeUtil.addSDEs([], 7, 'c-1'));
  const addSDEsNoSession = await settle(sdeUtil.addSDEs([], 'visitor'));

  const gdprUtil = Toolbelt.GDPRUtil();
  const replace = await settle(gdprUtil.replaceConversationFiles(everything, {username: 'u', password: 'p'}));
  const replacePng = await settle(gdprUtil.replaceConversationFiles(everything, {username: 'u', password: 'p'},
                                                                    (path) => path.endsWith('.png'),
                                                                    {body: Buffer.from('iVBORw0KGgo=', 'base64'), contentType: 'image/png'}));
  const replaceBadArgs = await settle(gdprUtil.replaceConversationFiles(everything));
  const replaceBadFilter = await settle(gdprUtil.replaceConversationFiles(everything, {username: 'u', password: 'p'}, 'all'));
  const replaceBadFile = await settle(gdprUtil.replaceConversationFiles(everything, {username: 'u', password: 'p'}, null, {body: 'x'}));
  const replaceNoConversation = await settle(gdprUtil.replaceConversationFiles({}, {username: 'u', password: 'p'}));

  let mtls;
  try { Toolbelt.MTLSClient({cert: '', key: ''}); } catch (e) { mtls = e.message; }

  callback(null, {
    get, post, notOk, noPath,
    onlyRecords: Object.keys(onlyRecords),
    everything: Object.keys(everything).sort(),
    badType,
    sdes: {sdes: sdes.sdes.events.map((e) => e.sdeType), unAuthSdes: sdes.unAuthSdes.events.map((e) => e.serverTimeStamp)},
    addSDEs, addSDEsNotArray, addSDEsNoVisitor, addSDEsNoSession,
    replace, replacePng, replaceBadArgs, replaceBadFilter, replaceBadFile, replaceNoConversation, mtls,
  });
}

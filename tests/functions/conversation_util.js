const { Toolbelt, ConversationContentTypes } = require('lp-faas-toolbelt');
async function lambda(input, callback) {
  const util = Toolbelt.ConversationUtil();
  const conv = await util.getConversationById('c-1', [ConversationContentTypes.MESSAGE_RECORDS]);
  const hits = util.scanConversationForKeywords(conv, ['refund', 'HELLO']);
  let missing;
  try { await util.getConversationById('c-2'); } catch (e) { missing = e.message; }
  callback(null, {hits, missing});
}

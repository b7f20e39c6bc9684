const { Toolbelt } = require('lp-faas-toolbelt');
async function lambda(input, callback) {
  let missingConfig;
  try { Toolbelt.ContextServiceClient({accountId: 'le12345'}); } catch (e) { missingConfig = e.message; }
  const cs = Toolbelt.ContextServiceClient({apiKey: 'k', accountId: 'le12345'});
  await cs.createNamespace('bot', {ttl: 60});
  await cs.setPropertiesInNamespace('bot', {step: 1, name: 'Ann'}, 'conv-1');
  await cs.updatePropertiesInNamespace('bot', {step: 2}, 'conv-1');
  const all = await cs.getAllPropertiesInSession('bot', 'conv-1');
  const step = await cs.getPropertyInSession('bot', 'step', 'conv-1');
  const sel = await cs.getSelectedPropertiesInSession('bot', ['name'], 'conv-1');
  await cs.deletePropertyInSession('bot', 'name', 'conv-1');
  const after = await cs.getAllPropertiesInSession('bot', 'conv-1');
  const sessions = await cs.getListOfSessions('bot');
  const namespaces = (await cs.getListOfNamespaces()).map((n) => n.name);
  await cs.deleteSession('bot', 'conv-1');
  let unknown;
  try { await cs.getAllPropertiesInSession('nope'); } catch (e) { unknown = e.code; }
  callback(null, {missingConfig, all, step, sel, after, sessions, namespaces, unknown});
}

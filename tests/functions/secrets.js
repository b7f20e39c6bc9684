const { Toolbelt, SecretError, ErrorCodes } = require('lp-faas-toolbelt');
const secrets = Toolbelt.SecretClient();
async function lambda(input, callback) {
  const read = await secrets.readSecret('api-key');
  const updated = await secrets.updateSecret({key: 'api-key', value: 'new-value'});
  const reread = await secrets.readSecret('api-key');
  let missing;
  try { await secrets.readSecret('nope'); } catch (e) {
    missing = {isSecretError: e instanceof SecretError, code: e.code, notFound: e.code === ErrorCodes.Secret.NotFound};
  }
  let createViaUpdate;
  try { await secrets.updateSecret({key: 'brand-new', value: 'x'}); } catch (e) { createViaUpdate = e.code; }
  callback(null, {read, updated, reread: reread.value, missing, createViaUpdate});
}

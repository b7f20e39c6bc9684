// A test invoke by a FAAS_ADMIN (secret writes allowed for the invoker) updates a secret; the
// write is in the audit trail with the admin's user id.
const { Toolbelt } = require('lp-faas-toolbelt');
const secrets = Toolbelt.SecretClient();
async function lambda(input, callback) {
  const updated = await secrets.updateSecret({key: 'api-key', value: 'rotated'});
  callback(null, updated);
}

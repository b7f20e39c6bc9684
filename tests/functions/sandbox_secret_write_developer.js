// A test invoke by a FAAS_DEVELOPER (secret writes refused for the invoker) can read a secret
// but not replace it: updateSecret fails with the auth-failed SecretError, the value stays,
// and both attempts are in the audit trail with the developer's user id.
const { Toolbelt, SecretError, ErrorCodes } = require('lp-faas-toolbelt');
const secrets = Toolbelt.SecretClient();
async function lambda(input, callback) {
  const read = await secrets.readSecret('api-key');
  let write;
  try {
    await secrets.updateSecret({key: 'api-key', value: 'attacker-value'});
    write = 'written';
  } catch (e) {
    write = {isSecretError: e instanceof SecretError, authFailed: e.code === ErrorCodes.Secret.AuthFailed,
             namesRole: e.message.indexOf('FAAS_ADMIN') >= 0};
  }
  callback(null, {read: read.value, write});
}

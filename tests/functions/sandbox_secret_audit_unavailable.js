// When a secret access cannot be recorded, the function does not get the value (and sees why).
const { Toolbelt, ErrorCodes } = require('lp-faas-toolbelt');
async function lambda(input, callback) {
  try {
    const s = await Toolbelt.SecretClient().readSecret('api-key');
    callback(null, 'got ' + s.value);
  } catch (e) {
    callback(null, {code: e.code === ErrorCodes.Secret.OperationFailed ? 'op-failed' : e.code,
                    says: e.message.indexOf('could not be recorded') >= 0});
  }
}

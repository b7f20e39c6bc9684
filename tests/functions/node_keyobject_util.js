// crypto's secret KeyObjects (createHmac takes them, as jsonwebtoken does), PEM keys recognised
// by type, the signature functions' named error, and util.inherits.
const crypto = require('crypto');
const util = require('util');

function attempt(fn) {
  try { return {value: fn()}; } catch (e) { return {name: e.name, message: e.message}; }
}

function lambda(input, callback) {
  const key = crypto.createSecretKey(Buffer.from('key'));
  const viaKey = crypto.createHmac('sha256', key).update('The quick brown fox jumps over the lazy dog').digest('hex');
  const viaString = crypto.createHmac('sha256', 'key').update('The quick brown fox jumps over the lazy dog').digest('hex');
  const hexKey = crypto.createSecretKey('6b6579', 'hex');
  const pub = crypto.createPublicKey('-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n');
  const priv = crypto.createPrivateKey({key: '-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n'});
  function Base() {}
  Base.prototype.hello = function () { return 'hello from ' + this.name; };
  function Derived(name) { this.name = name; }
  util.inherits(Derived, Base);
  callback(null, {
    viaKey,
    same: viaKey === viaString,
    key: {type: key.type, size: key.symmetricKeySize, isKeyObject: key instanceof crypto.KeyObject,
          exported: key.export().toString(), jwk: key.export({format: 'jwk'}), equalsHex: key.equals(hexKey)},
    pub: pub.type,
    priv: priv.type,
    privExport: attempt(() => priv.export()),
    hmacWithPublic: attempt(() => crypto.createHmac('sha256', pub)),
    notPem: attempt(() => crypto.createPublicKey('just a secret')),
    createSign: attempt(() => crypto.createSign('RSA-SHA256')),
    verify: attempt(() => crypto.verify('sha256', Buffer.from('x'), pub, Buffer.from('y'))),
    inherits: {hello: new Derived('d').hello(), super: Derived.super_ === Base, instance: new Derived('x') instanceof Base},
    inheritsBad: attempt(() => util.inherits(Derived, null)),
  });
}

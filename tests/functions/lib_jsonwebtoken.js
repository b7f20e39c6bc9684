// jsonwebtoken as LivePerson's examples use it: sign and verify with a shared secret (HS256),
// callback and synchronous forms, a bad signature, expiry, decode; RS256 names what is missing.
const jwt = require('jsonwebtoken');

function attempt(fn) {
  try {
    return {value: fn()};
  } catch (e) {
    return {name: e.name, message: e.message, expiredAt: e.expiredAt};
  }
}

function lambda(input, callback) {
  const secret = 'shhhhh';
  // Known vectors (the same library under Node): fixed iat, and jwt.io's HS256 example.
  const fixed = jwt.sign({foo: 'bar', iat: 1700000000}, secret);
  const jwtIo = jwt.sign({sub: '1234567890', name: 'John Doe', iat: 1516239022}, 'your-256-bit-secret');
  const hs512 = jwt.sign({foo: 'bar'}, secret, {algorithm: 'HS512', noTimestamp: true});

  const token = jwt.sign({userId: 42, scope: 'faas'}, secret, {expiresIn: '1h', issuer: 'parley'});
  const verified = jwt.verify(token, secret, {issuer: 'parley'});

  const parts = fixed.split('.');
  const tampered = parts[0] + '.' + Buffer.from('{"foo":"baz","iat":1700000000}').toString('base64url') + '.' + parts[2];

  const short = jwt.sign({foo: 'bar', iat: 1700000000}, secret, {expiresIn: 60});
  jwt.verify(fixed, 'wrong-secret', (err, decoded) => {
    callback(null, {
      fixed,
      jwtIo,
      hs512,
      verified: {userId: verified.userId, scope: verified.scope, iss: verified.iss,
                 lifetime: verified.exp - verified.iat},
      callbackForm: {name: err && err.name, message: err && err.message, decoded: decoded === undefined},
      tampered: attempt(() => jwt.verify(tampered, secret)),
      wrongAlgorithm: attempt(() => jwt.verify(hs512, secret, {algorithms: ['HS256']})),
      beforeExpiry: attempt(() => jwt.verify(short, secret, {clockTimestamp: 1700000059}).foo),
      expired: attempt(() => jwt.verify(short, secret, {clockTimestamp: 1700000061})),
      expiredLongAgo: attempt(() => jwt.verify(jwt.sign({exp: 1}, secret), secret)),
      tolerance: attempt(() => jwt.verify(short, secret, {clockTimestamp: 1700000061, clockTolerance: 5}).foo),
      decoded: jwt.decode(fixed, {complete: true}),
      garbage: attempt(() => jwt.verify('not.a.token', secret)),
      noSecret: attempt(() => jwt.verify(fixed, '')),
      rs256: attempt(() => jwt.sign({a: 1}, '-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n', {algorithm: 'RS256'})),
      jsforce: attempt(() => require('jsforce')),
    });
  });
}

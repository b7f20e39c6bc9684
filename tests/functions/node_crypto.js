// crypto as LivePerson's examples use it: verifying a webhook signature (HMAC-SHA256 of the raw
// body, hex and base64), digests, random ids and a constant-time comparison.
const crypto = require('crypto');
function lambda(input, callback) {
  const body = JSON.stringify(input.payload);
  const secret = 'whsec_test_secret';
  const hex = crypto.createHmac('sha256', secret).update(body).digest('hex');
  const b64 = crypto.createHmac('sha256', Buffer.from(secret)).update(body, 'utf8').digest('base64');
  const header = 'sha256=' + hex;
  const expected = Buffer.from('sha256=' + crypto.createHmac('sha256', secret).update(body).digest('hex'));
  const uuid = crypto.randomUUID();
  const r = crypto.randomBytes(32);
  let badAlg;
  try { crypto.createHash('whirlpool9'); } catch (e) { badAlg = e.message; }
  let lengths;
  try { crypto.timingSafeEqual(Buffer.from('a'), Buffer.from('ab')); } catch (e) { lengths = e.name; }
  callback(null, {
    hex, b64,
    verified: crypto.timingSafeEqual(Buffer.from(header), expected),
    tampered: crypto.timingSafeEqual(Buffer.from(header.replace(/.$/, (c) => (c === '0' ? '1' : '0'))), expected),
    md5: crypto.createHash('md5').update('hello').digest('hex'),
    sha1: crypto.createHash('sha1').update('hello').digest('base64'),
    sha256: crypto.createHash('sha256').update('hel').update(Buffer.from('lo')).digest('hex'),
    sha512: crypto.createHash('sha512').update('').digest('hex').slice(0, 32),
    hmac512: crypto.createHmac('sha512', 'k').update('v').digest('hex').slice(0, 32),
    digestBuffer: Buffer.isBuffer(crypto.createHash('sha256').update('x').digest()),
    uuidFormat: /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(uuid),
    uuidsDiffer: uuid !== crypto.randomUUID(),
    randomLength: r.length,
    randomNotZero: r.some((b) => b !== 0),
    randomInt: (() => { const v = crypto.randomInt(10, 20); return v >= 10 && v < 20; })(),
    badAlg, lengths,
  });
}

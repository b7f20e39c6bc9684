// The Node built-ins open no new surface: Buffer.allocUnsafe gives zeroed memory (never earlier
// contents), sizes past the ArrayBuffer cap are a RangeError (not a crash), randomBytes is
// bounded, the natives behind crypto/Buffer stay unreachable (no `natives`, strict functions
// without .caller), and a tampered prototype misleads only the function that tampered.
const crypto = require('crypto');
function attempt(fn) {
  try { return fn(); } catch (e) { return e.name; }
}
function lambda(input, callback) {
  // Fill and drop many buffers, then ask for "unsafe" ones of the same sizes.
  for (let i = 0; i < 50; i++) Buffer.alloc(64 * 1024, 0xab);
  const unsafe = Buffer.allocUnsafe(64 * 1024);
  const slow = Buffer.allocUnsafeSlow(4096);
  const zeroed = unsafe.every((b) => b === 0) && slow.every((b) => b === 0);
  const big = attempt(() => Buffer.alloc(1.5e9).length);
  const bigConcat = attempt(() => Buffer.concat([Buffer.from('a')], 1.5e9).length);
  const negative = attempt(() => Buffer.alloc(-1).length);
  const randomTooMany = attempt(() => crypto.randomBytes(65537).length);
  const randomNegative = attempt(() => crypto.randomBytes(-1).length);
  const randomMax = crypto.randomBytes(65536).length;
  const hashNotBytes = attempt(() => crypto.createHash('sha256').update({}).digest('hex'));
  const caller = attempt(() => typeof crypto.createHash.caller);
  const bufferCaller = attempt(() => typeof Buffer.from.caller);
  const hashInternals = Object.keys(crypto.createHash('sha256')).filter((k) => typeof crypto.createHash('sha256')[k] === 'function');
  // A tampered subarray breaks only this function's own Buffer use.
  const saved = Uint8Array.prototype.subarray;
  Uint8Array.prototype.subarray = function () { return new Uint8Array([1, 2, 3]); };
  const tampered = attempt(() => Buffer.from('hello').toString('hex'));
  Uint8Array.prototype.subarray = saved;
  callback(null, {
    zeroed, big, bigConcat, negative, randomTooMany, randomNegative, randomMax, hashNotBytes,
    caller, bufferCaller, hashInternals, tampered, natives: typeof natives,
    after: crypto.createHash('sha256').update('ok').digest('hex').length,
  });
}

// Buffer as functions use it: base64 credentials and payloads, hex, concatenation, byte length,
// slicing and JSON.
function lambda(input, callback) {
  const basic = 'Basic ' + Buffer.from('user:pässword').toString('base64');
  const decoded = Buffer.from(input.payload.b64, 'base64').toString();
  const joined = Buffer.concat([Buffer.from('ab'), Buffer.from([0x63, 0x64]), new Uint8Array([0x65])]);
  const b = Buffer.from('héllo wörld');
  callback(null, {
    basic, decoded,
    hex: Buffer.from('Parley').toString('hex'),
    fromHex: Buffer.from('5061726c6579', 'hex').toString('utf8'),
    base64url: Buffer.from([0xfb, 0xff, 0xfe]).toString('base64url'),
    joined: joined.toString(), joinedLength: joined.length,
    byteLength: Buffer.byteLength('héllo wörld'), length: 'héllo wörld'.length,
    slice: b.slice(0, 6).toString(), sub: b.subarray(7).toString('latin1'), range: b.toString('utf8', 1, 3),
    json: JSON.stringify(Buffer.from('hi')),
    equals: Buffer.from('x').equals(Buffer.from('x')),
    compare: Buffer.compare(Buffer.from('a'), Buffer.from('b')),
    alloc: Buffer.alloc(3, 'ab').toString(), allocUnsafe: Array.from(Buffer.allocUnsafe(4)),
    isBuffer: [Buffer.isBuffer(b), Buffer.isBuffer(new Uint8Array(1))],
    isUint8Array: b instanceof Uint8Array,
    fromBufferModule: require('buffer').Buffer === Buffer,
    written: (() => { const w = Buffer.alloc(4); const n = w.write('hey', 1); return [n, w.toString('hex')]; })(),
    readWrite: (() => { const w = Buffer.alloc(4); w.writeUInt32BE(0xdeadbeef); return [w.readUInt32BE(0), w.readUInt16BE(2)]; })(),
    invalidUtf8: Buffer.from([0x61, 0xff, 0x62]).toString(),
  });
}

// Parley function bootstrap. Runs once per context, before the function's code, as
// `(function (natives, env) {...})`. It installs what a function sees (console, timers,
// process.env, require) and returns the entry points the engine calls. Built-ins are captured
// here, before user code can replace them.
(function (natives, env) {
  'use strict';
  const g = globalThis;
  const apply = Reflect.apply;
  const defineProperty = Object.defineProperty;
  const JSONparse = JSON.parse;
  const JSONstringify = JSON.stringify;
  const StringCtor = String;
  const NumberCtor = Number;
  const ErrorCtor = Error;
  const TypeErrorCtor = TypeError;
  const SyntaxErrorCtor = SyntaxError;
  const ReferenceErrorCtor = ReferenceError;
  const MapCtor = Map;
  const MapGet = Map.prototype.get;
  const MapSet = Map.prototype.set;
  const MapDelete = Map.prototype.delete;
  const ArraySlice = Array.prototype.slice;
  const PromiseResolve = Promise.resolve.bind(Promise);
  const PromiseThen = Promise.prototype.then;

  delete g.WebAssembly;
  defineProperty(g, 'global', {value: g, writable: true, configurable: true});

  function str(v) {
    try {
      return StringCtor(v);
    } catch (e) {
      return '[unprintable]';
    }
  }
  function describe(v) {
    if (typeof v === 'string') return v;
    if (v instanceof ErrorCtor) return str(v.stack || v);
    try {
      const s = JSONstringify(v);
      return s === undefined ? str(v) : s;
    } catch (e) {
      return str(v);
    }
  }

  // console: Debug=0, Info=1, Warn=2, Error=3.
  function logAt(level) {
    return function (...args) {
      const message = args.length ? describe(args[0]) : '';
      let extras = '[]';
      if (args.length > 1) {
        const rest = apply(ArraySlice, args, [1]);
        try {
          extras = JSONstringify(rest);
        } catch (e) {
          extras = JSONstringify(rest.map(describe));
        }
      }
      natives.log(level, message, extras);
    };
  }
  const console = {
    debug: logAt(0), trace: logAt(0), info: logAt(1), log: logAt(1), warn: logAt(2), error: logAt(3),
  };
  defineProperty(g, 'console', {value: console, writable: true, configurable: true});

  // Timers run on the invocation's event loop in the engine; the callbacks stay here.
  const timers = new MapCtor();
  function addTimer(repeat, fn, ms, args) {
    if (typeof fn !== 'function') {
      throw new TypeErrorCtor('The "callback" argument must be of type function');
    }
    let delay = NumberCtor(ms);
    if (!(delay >= 1)) delay = repeat ? 1 : 0;
    if (delay > 2147483647) delay = 1;
    const id = natives.timer(delay, repeat);
    apply(MapSet, timers, [id, {fn, args, repeat}]);
    return id;
  }
  function clearTimer(id) {
    if (apply(MapDelete, timers, [id])) natives.clearTimer(id);
  }
  g.setTimeout = function setTimeout(fn, ms, ...args) { return addTimer(false, fn, ms, args); };
  g.setInterval = function setInterval(fn, ms, ...args) { return addTimer(true, fn, ms, args); };
  g.setImmediate = function setImmediate(fn, ...args) { return addTimer(false, fn, 0, args); };
  g.clearTimeout = clearTimer;
  g.clearInterval = clearTimer;
  g.clearImmediate = clearTimer;
  g.queueMicrotask = function queueMicrotask(fn) {
    if (typeof fn !== 'function') throw new TypeErrorCtor('queueMicrotask expects a function');
    apply(PromiseThen, PromiseResolve(), [() => fn()]);
  };

  g.process = {
    env,
    nextTick(fn, ...args) { apply(PromiseThen, PromiseResolve(), [() => apply(fn, undefined, args)]); },
  };

  // ---- Node built-ins (the common subset functions use): Buffer, TextEncoder/TextDecoder, URL,
  // URLSearchParams and the modules crypto, buffer, util, querystring, url. Bytes are
  // Uint8Arrays allocated here in JS (the ArrayBuffer cap applies as a RangeError); digests,
  // HMACs, random bytes and UTF-8 conversion are natives.
  function nodeBuiltins(natives) {
    const U8 = Uint8Array;
    const fromCharCode = String.fromCharCode;
    const CHUNK = 8192;
    const RangeErrorCtor = RangeError;
    const TypeErrorCtor2 = TypeError;

    function bytesToBinary(u8, start, end) {
      let out = '';
      for (let i = start; i < end; i += CHUNK) {
        out += apply(fromCharCode, null, u8.subarray(i, Math.min(end, i + CHUNK)));
      }
      return out;
    }
    function utf8Bytes(s) {
      s = StringCtor(s);
      const n = natives.utf8Length(s);
      const out = new Buffer(n);
      if (n) natives.utf8Write(s, out);
      return out;
    }
    const HEX = '0123456789abcdef';
    function hexEncode(u8, start, end) {
      let out = '';
      for (let i = start; i < end; i++) out += HEX[u8[i] >> 4] + HEX[u8[i] & 15];
      return out;
    }
    function hexValue(c) {
      if (c >= 48 && c <= 57) return c - 48;
      if (c >= 97 && c <= 102) return c - 87;
      if (c >= 65 && c <= 70) return c - 55;
      return -1;
    }
    function hexDecode(s) {
      const n = s.length >> 1;
      const out = new Buffer(n);
      let i = 0;
      for (; i < n; i++) {
        const hi = hexValue(s.charCodeAt(2 * i));
        const lo = hexValue(s.charCodeAt(2 * i + 1));
        if (hi < 0 || lo < 0) break;  // Node stops at the first invalid pair
        out[i] = hi * 16 + lo;
      }
      return i === n ? out : out.subarray(0, i);
    }
    const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const B64REV = new U8(128).fill(255);
    for (let i = 0; i < 64; i++) B64REV[B64.charCodeAt(i)] = i;
    B64REV[45] = 62;  // '-'
    B64REV[95] = 63;  // '_'
    function base64Encode(u8, start, end, url) {
      const abc = url ? B64URL : B64;
      let out = '';
      let i = start;
      for (; i + 2 < end; i += 3) {
        const v = (u8[i] << 16) | (u8[i + 1] << 8) | u8[i + 2];
        out += abc[v >> 18] + abc[(v >> 12) & 63] + abc[(v >> 6) & 63] + abc[v & 63];
      }
      if (i < end) {
        const v = (u8[i] << 16) | (i + 1 < end ? u8[i + 1] << 8 : 0);
        out += abc[v >> 18] + abc[(v >> 12) & 63];
        out += i + 1 < end ? abc[(v >> 6) & 63] : (url ? '' : '=');
        if (!url) out += '=';
      }
      return out;
    }
    function base64Decode(s) {
      // Lenient like Node: both alphabets, whitespace and other characters skipped, '=' ends.
      const out = new Buffer(Math.ceil(s.length * 3 / 4));
      let n = 0;
      let acc = 0;
      let bits = 0;
      for (let i = 0; i < s.length; i++) {
        const c = s.charCodeAt(i);
        if (c === 61) break;
        const v = c < 128 ? B64REV[c] : 255;
        if (v === 255) continue;
        acc = (acc << 6) | v;
        bits += 6;
        if (bits >= 8) {
          bits -= 8;
          out[n++] = (acc >> bits) & 255;
        }
      }
      return out.subarray(0, n);
    }
    function normEncoding(enc) {
      if (enc === undefined || enc === null) return 'utf8';
      const e = StringCtor(enc).toLowerCase();
      switch (e) {
        case 'utf8': case 'utf-8': return 'utf8';
        case 'hex': return 'hex';
        case 'base64': return 'base64';
        case 'base64url': return 'base64url';
        case 'latin1': case 'binary': return 'latin1';
        case 'ascii': return 'ascii';
        case 'ucs2': case 'ucs-2': case 'utf16le': case 'utf-16le': return 'utf16le';
        default: return '';
      }
    }
    function encodingOrThrow(enc) {
      const e = normEncoding(enc);
      if (!e) throw new TypeErrorCtor2(`Unknown encoding: ${str(enc)}`);
      return e;
    }
    function fromString(s, enc) {
      switch (encodingOrThrow(enc)) {
        case 'utf8': return utf8Bytes(s);
        case 'hex': return hexDecode(s);
        case 'base64': case 'base64url': return base64Decode(s);
        case 'latin1': case 'ascii': {
          const out = new Buffer(s.length);
          for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 255;
          return out;
        }
        case 'utf16le': {
          const out = new Buffer(s.length * 2);
          for (let i = 0; i < s.length; i++) {
            const c = s.charCodeAt(i);
            out[2 * i] = c & 255;
            out[2 * i + 1] = c >> 8;
          }
          return out;
        }
      }
      return utf8Bytes(s);
    }
    function toStringAs(u8, enc, start, end) {
      switch (encodingOrThrow(enc)) {
        case 'utf8': return natives.utf8Decode(u8.subarray(start, end));
        case 'hex': return hexEncode(u8, start, end);
        case 'base64': return base64Encode(u8, start, end, false);
        case 'base64url': return base64Encode(u8, start, end, true);
        case 'latin1': return bytesToBinary(u8, start, end);
        case 'ascii': {
          let out = '';
          for (let i = start; i < end; i++) out += fromCharCode(u8[i] & 127);
          return out;
        }
        case 'utf16le': {
          let out = '';
          for (let i = start; i + 1 < end; i += 2) out += fromCharCode(u8[i] | (u8[i + 1] << 8));
          return out;
        }
      }
      return '';
    }
    function isView(v) { return ArrayBuffer.isView(v); }
    function viewBytes(v) {
      if (v instanceof U8) return v;
      if (isView(v)) return new U8(v.buffer, v.byteOffset, v.byteLength);
      if (v instanceof ArrayBuffer) return new U8(v);
      return null;
    }
    function clampIndex(v, len, dflt) {
      if (v === undefined) return dflt;
      v = NumberCtor(v);
      if (v !== v) return 0;  // NaN
      v = Math.trunc(v);
      if (v < 0) v = Math.max(0, len + v);
      return Math.min(v, len);
    }

    // Buffer: a Uint8Array with Node's encodings. allocUnsafe is zero-filled like alloc (an
    // ArrayBuffer is always zeroed here), so no earlier memory can be read through it.
    class Buffer extends U8 {
      static from(value, encOrOffset, length) {
        if (typeof value === 'string') return fromString(value, encOrOffset);
        if (value instanceof ArrayBuffer) {
          const off = encOrOffset === undefined ? 0 : NumberCtor(encOrOffset);
          const len = length === undefined ? value.byteLength - off : NumberCtor(length);
          return new Buffer(value, off, len);
        }
        if (isView(value)) {
          const src = viewBytes(value);
          const out = new Buffer(src.length);
          out.set(src);
          return out;
        }
        if (value !== null && typeof value === 'object') {
          if (value.type === 'Buffer' && Array.isArray(value.data)) return Buffer.from(value.data);
          if (typeof value.length === 'number' || Array.isArray(value)) {
            const out = new Buffer(value.length >>> 0);
            for (let i = 0; i < out.length; i++) out[i] = value[i];
            return out;
          }
        }
        throw new TypeErrorCtor2('The first argument must be a string, Buffer, ArrayBuffer, Array or array-like object');
      }
      static alloc(size, fill, enc) {
        const b = new Buffer(checkSize(size));
        if (fill !== undefined && fill !== 0) b.fill(fill, 0, b.length, enc);
        return b;
      }
      static allocUnsafe(size) { return new Buffer(checkSize(size)); }
      static allocUnsafeSlow(size) { return new Buffer(checkSize(size)); }
      static isBuffer(v) { return v instanceof Buffer; }
      static isEncoding(e) { return typeof e === 'string' && normEncoding(e) !== ''; }
      static byteLength(v, enc) {
        if (typeof v !== 'string') {
          if (isView(v) || v instanceof ArrayBuffer) return v.byteLength;
          throw new TypeErrorCtor2('The "string" argument must be a string, Buffer or ArrayBuffer');
        }
        const e = normEncoding(enc) || 'utf8';
        if (e === 'utf8') return natives.utf8Length(v);
        if (e === 'hex') return v.length >>> 1;
        if (e === 'base64' || e === 'base64url') return base64Decode(v).length;
        if (e === 'utf16le') return v.length * 2;
        return v.length;
      }
      static concat(list, totalLength) {
        if (!Array.isArray(list)) throw new TypeErrorCtor2('The "list" argument must be an Array of Buffers or Uint8Arrays');
        let total = 0;
        for (const b of list) {
          if (!(b instanceof U8)) throw new TypeErrorCtor2('The "list" argument must be an Array of Buffers or Uint8Arrays');
          total += b.length;
        }
        if (totalLength !== undefined) total = checkSize(totalLength);
        const out = new Buffer(total);
        let pos = 0;
        for (const b of list) {
          if (pos >= total) break;
          const part = b.length > total - pos ? b.subarray(0, total - pos) : b;
          out.set(part, pos);
          pos += part.length;
        }
        return out;
      }
      static compare(a, b) { return compareBytes(a, b); }
      toString(enc, start, end) {
        const s = clampIndex(start, this.length, 0);
        const e = clampIndex(end, this.length, this.length);
        if (e <= s) return '';
        return toStringAs(this, enc, s, e);
      }
      toJSON() { return {type: 'Buffer', data: Array.from(this)}; }
      equals(other) {
        if (!(other instanceof U8)) throw new TypeErrorCtor2('The "otherBuffer" argument must be a Buffer or Uint8Array');
        return compareBytes(this, other) === 0;
      }
      compare(other) { return compareBytes(this, other); }
      // Node's slice is a view, like subarray (a Uint8Array's slice copies).
      slice(start, end) { return this.subarray(start, end); }
      write(string, offset, length, enc) {
        if (typeof offset === 'string') { enc = offset; offset = 0; length = undefined; }
        else if (typeof length === 'string') { enc = length; length = undefined; }
        const off = clampIndex(offset, this.length, 0);
        const bytes = fromString(StringCtor(string), enc);
        const n = Math.min(bytes.length, this.length - off, length === undefined ? Infinity : length);
        this.set(bytes.subarray(0, n), off);
        return n;
      }
      fill(value, offset, end, enc) {
        if (typeof offset === 'string') { enc = offset; offset = 0; end = this.length; }
        const s = clampIndex(offset, this.length, 0);
        const e = clampIndex(end, this.length, this.length);
        if (typeof value === 'string') {
          const bytes = value.length === 1 && value.charCodeAt(0) < 128 && !enc ? null : fromString(value, enc);
          if (!bytes) return apply(U8.prototype.fill, this, [value.charCodeAt(0), s, e]);
          if (bytes.length === 0) return apply(U8.prototype.fill, this, [0, s, e]);
          for (let i = s; i < e; i++) this[i] = bytes[(i - s) % bytes.length];
          return this;
        }
        return apply(U8.prototype.fill, this, [NumberCtor(value) & 255, s, e]);
      }
      copy(target, targetStart, sourceStart, sourceEnd) {
        const ts = clampIndex(targetStart, target.length, 0);
        const ss = clampIndex(sourceStart, this.length, 0);
        const se = clampIndex(sourceEnd, this.length, this.length);
        const n = Math.max(0, Math.min(se - ss, target.length - ts));
        target.set(this.subarray(ss, ss + n), ts);
        return n;
      }
      readUInt8(o = 0) { return this[o]; }
      readUInt16BE(o = 0) { return (this[o] << 8) | this[o + 1]; }
      readUInt32BE(o = 0) { return ((this[o] << 24) >>> 0) + ((this[o + 1] << 16) | (this[o + 2] << 8) | this[o + 3]); }
      writeUInt8(v, o = 0) { this[o] = v; return o + 1; }
      writeUInt16BE(v, o = 0) { this[o] = v >>> 8; this[o + 1] = v; return o + 2; }
      writeUInt32BE(v, o = 0) { this[o] = v >>> 24; this[o + 1] = v >>> 16; this[o + 2] = v >>> 8; this[o + 3] = v; return o + 4; }
    }
    const kMaxLength = 2 ** 31 - 1;
    Buffer.poolSize = 8192;
    function checkSize(size) {
      if (typeof size !== 'number' || size !== size || size < 0 || size > kMaxLength) {
        throw new RangeErrorCtor(`The argument 'size' is invalid. Received ${str(size)}`);
      }
      return Math.floor(size);
    }
    function compareBytes(a, b) {
      const n = Math.min(a.length, b.length);
      for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
      return a.length === b.length ? 0 : (a.length < b.length ? -1 : 1);
    }
    function toBytes(data, enc, what) {
      if (typeof data === 'string') return fromString(data, enc);
      const v = viewBytes(data);
      if (!v) throw new TypeErrorCtor2(`The "${what}" argument must be a string, Buffer, TypedArray or DataView`);
      return v;
    }

    // ---- crypto
    const HASHES = ['md5', 'sha1', 'sha256', 'sha384', 'sha512'];
    function hashName(alg) {
      let a = StringCtor(alg).toLowerCase();
      if (a.startsWith('rsa-')) a = a.slice(4);
      a = a.replace('-', '');
      return HASHES.includes(a) ? a : null;
    }
    function digestOut(bytes, enc) {
      const b = new Buffer(bytes);
      return enc === undefined || enc === 'buffer' ? b : b.toString(enc);
    }
    class Hash {
      constructor(alg, key) {
        this._alg = hashName(alg);
        if (!this._alg) throw new ErrorCtor(key === undefined ? 'Digest method not supported' : `Invalid digest: ${str(alg)}`);
        this._key = key;
        this._parts = [];
        this._done = false;
      }
      update(data, enc) {
        if (this._done) throw new ErrorCtor('Digest already called');
        this._parts.push(toBytes(data, enc, 'data'));
        return this;
      }
      digest(enc) {
        if (this._done) throw new ErrorCtor('Digest already called');
        this._done = true;
        const all = this._parts.length === 1 ? this._parts[0] : Buffer.concat(this._parts);
        this._parts = [];
        const out = this._key === undefined ? natives.digest(this._alg, all) : natives.hmac(this._alg, this._key, all);
        return digestOut(out, enc);
      }
    }
    function randomBytes(size, cb) {
      const b = new Buffer(natives.randomBytes(checkSize(size)));
      if (typeof cb === 'function') {
        g.process.nextTick(cb, null, b);
        return undefined;
      }
      return b;
    }
    function randomUUID() {
      const b = new U8(natives.randomBytes(16));
      b[6] = (b[6] & 0x0f) | 0x40;
      b[8] = (b[8] & 0x3f) | 0x80;
      const h = hexEncode(b, 0, 16);
      return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
    }
    function randomInt(min, max, cb) {
      if (max === undefined || typeof max === 'function') { cb = max; max = min; min = 0; }
      if (!NumberCtor.isSafeInteger(min) || !NumberCtor.isSafeInteger(max) || max <= min || max - min > 2 ** 48) {
        throw new RangeErrorCtor('randomInt needs safe integers with min < max and max - min <= 2^48');
      }
      const range = max - min;
      const limit = 2 ** 48 - (2 ** 48 % range);
      let v;
      do {
        const b = new U8(natives.randomBytes(6));
        v = b[0] * 2 ** 40 + b[1] * 2 ** 32 + ((b[2] << 24) >>> 0) + ((b[3] << 16) | (b[4] << 8) | b[5]);
      } while (v >= limit);
      const r = min + (v % range);
      if (typeof cb === 'function') { g.process.nextTick(cb, null, r); return undefined; }
      return r;
    }
    // Key objects. Secret keys hold bytes for HMAC (jsonwebtoken's HS256/384/512 pass them to
    // createHmac). Asymmetric keys are recognised by their PEM armour only, so that a library
    // that sorts keys by type (jsonwebtoken) reaches createSign/createVerify and their error,
    // which names what is missing; no RSA or EC code runs here.
    const secretOf = new WeakMap();
    class KeyObject {
      constructor(type, bytes) {
        if (type !== 'secret' && type !== 'public' && type !== 'private') {
          throw new TypeErrorCtor2('The "type" argument must be one of: secret, public, private');
        }
        this._type = type;
        if (bytes) secretOf.set(this, bytes);
      }
      get type() { return this._type; }
      get symmetricKeySize() { return this._type === 'secret' ? secretOf.get(this).length : undefined; }
      get asymmetricKeyType() { return undefined; }
      export(options) {
        if (this._type !== 'secret') throw new ErrorCtor(`exporting ${this._type} keys is not available in Parley functions`);
        const b = new Buffer(secretOf.get(this));
        return options && options.format === 'jwk' ? {kty: 'oct', k: b.toString('base64url')} : b;
      }
      equals(other) {
        if (!(other instanceof KeyObject) || other._type !== 'secret' || this._type !== 'secret') return false;
        const x = secretOf.get(this);
        const y = secretOf.get(other);
        return x.length === y.length && natives.equal(x, y);
      }
    }
    const PEM = /-----BEGIN ((?:RSA |EC |ENCRYPTED )?(PUBLIC|PRIVATE) KEY|CERTIFICATE)-----/;
    function pemKey(input, wanted) {
      let text = input;
      if (input && typeof input === 'object' && !viewBytes(input) && input.key !== undefined) text = input.key;
      if (viewBytes(text)) text = new Buffer(viewBytes(text)).toString('latin1');
      const m = typeof text === 'string' ? PEM.exec(text) : null;
      if (!m) throw new TypeErrorCtor2(`Failed to read the ${wanted} key: only PEM-armoured keys are recognised`);
      return new KeyObject(m[2] === 'PRIVATE' ? 'private' : 'public');
    }
    function signaturesMissing(what) {
      return function () {
        throw new ErrorCtor(`crypto.${what} is not available in Parley functions: RSA and ECDSA ` +
                            'signatures (jsonwebtoken\'s RS*, PS* and ES* algorithms) are not supported; ' +
                            'use HMAC (createHmac, or HS256/HS384/HS512 with jsonwebtoken)');
      };
    }
    function hmacKey(key) {
      if (key instanceof KeyObject) {
        if (key.type !== 'secret') throw new TypeErrorCtor2(`Invalid key object type ${key.type}, expected secret.`);
        return secretOf.get(key);
      }
      if (key === undefined || key === null) throw new TypeErrorCtor2('The "key" argument must be a string, Buffer, TypedArray, DataView or KeyObject');
      return toBytes(key, 'utf8', 'key');
    }
    const crypto = {
      createHash(alg) { return new Hash(alg); },
      createHmac(alg, key) { return new Hash(alg, hmacKey(key)); },
      KeyObject,
      createSecretKey(key, enc) {
        if (key === undefined || key === null) throw new TypeErrorCtor2('The "key" argument must be a string, Buffer, TypedArray or DataView');
        return new KeyObject('secret', new U8(toBytes(key, enc, 'key')));
      },
      createPublicKey(key) { return pemKey(key, 'public'); },
      createPrivateKey(key) { return pemKey(key, 'private'); },
      createSign: signaturesMissing('createSign'),
      createVerify: signaturesMissing('createVerify'),
      sign: signaturesMissing('sign'),
      verify: signaturesMissing('verify'),
      randomBytes,
      pseudoRandomBytes: randomBytes,
      randomUUID,
      randomInt,
      timingSafeEqual(a, b) {
        const x = viewBytes(a);
        const y = viewBytes(b);
        if (!x || !y) throw new TypeErrorCtor2('The "buf1" and "buf2" arguments must be Buffers, TypedArrays or DataViews');
        if (x.byteLength !== y.byteLength) throw new RangeErrorCtor('Input buffers must have the same byte length');
        return natives.equal(x, y);
      },
      getHashes() { return HASHES.slice(); },
      getRandomValues(arr) {
        const v = viewBytes(arr);
        if (!v || v.byteLength > 65536) throw new TypeErrorCtor2('getRandomValues takes an integer TypedArray of at most 65536 bytes');
        v.set(new U8(natives.randomBytes(v.byteLength)));
        return arr;
      },
    };

    // ---- TextEncoder / TextDecoder (UTF-8 only)
    class TextEncoder {
      get encoding() { return 'utf-8'; }
      encode(s = '') { return new U8(utf8Bytes(s).buffer); }
    }
    class TextDecoder {
      constructor(label = 'utf-8', options = {}) {
        const l = StringCtor(label).trim().toLowerCase();
        if (l !== 'utf-8' && l !== 'utf8' && l !== 'unicode-1-1-utf-8') {
          throw new RangeErrorCtor(`The "${str(label)}" encoding is not supported (only utf-8)`);
        }
        if (options && options.fatal) throw new RangeErrorCtor('TextDecoder: the fatal option is not supported');
        this._ignoreBOM = !!(options && options.ignoreBOM);
      }
      get encoding() { return 'utf-8'; }
      decode(input) {
        if (input === undefined) return '';
        const v = viewBytes(input);
        if (!v) throw new TypeErrorCtor2('The "input" argument must be an ArrayBuffer or ArrayBufferView');
        const bom = !this._ignoreBOM && v.length >= 3 && v[0] === 0xef && v[1] === 0xbb && v[2] === 0xbf;
        return natives.utf8Decode(bom ? v.subarray(3) : v);
      }
    }

    // ---- util
    function inspect(v, depth = 2, seen = []) {
      if (typeof v === 'string') return seen.length ? `'${v}'` : v;
      if (typeof v === 'bigint') return `${v}n`;
      if (typeof v === 'symbol') return v.toString();
      if (typeof v === 'function') return `[Function: ${v.name || '(anonymous)'}]`;
      if (v === null || typeof v !== 'object') return StringCtor(v);
      if (seen.includes(v)) return '[Circular]';
      if (v instanceof ErrorCtor) return str(v.stack || v);
      if (v instanceof Date) return isNaN(v) ? 'Invalid Date' : v.toISOString();
      if (v instanceof U8) return `<${v instanceof Buffer ? 'Buffer' : 'Uint8Array'} ${hexEncode(v, 0, Math.min(v.length, 50)).replace(/(..)(?!$)/g, '$1 ')}${v.length > 50 ? ' ...' : ''}>`;
      if (seen.length > depth) return Array.isArray(v) ? '[Array]' : '[Object]';
      const inner = [...seen, v];
      if (Array.isArray(v)) {
        return v.length ? `[ ${v.map((x) => inspect(x, depth, inner)).join(', ')} ]` : '[]';
      }
      const keys = Object.keys(v);
      if (!keys.length) return '{}';
      const body = keys.map((k) => `${/^[A-Za-z_$][\w$]*$/.test(k) ? k : `'${k}'`}: ${inspect(v[k], depth, inner)}`);
      return `{ ${body.join(', ')} }`;
    }
    function format(f, ...args) {
      const fmtArg = (a) => (typeof a === 'string' ? a : inspect(a));
      if (typeof f !== 'string') return [f, ...args].map(fmtArg).join(' ');
      let i = 0;
      let out = f.replace(/%([sdifjoOc%])/g, (m, c) => {
        if (c === '%') return '%';
        if (i >= args.length) return m;
        const a = args[i++];
        switch (c) {
          case 's':
            if (typeof a === 'bigint') return `${a}n`;
            if (typeof a === 'object' && a !== null) return inspect(a, 1, []);
            return StringCtor(a);
          case 'd':
            if (typeof a === 'bigint') return `${a}n`;
            return typeof a === 'object' && a !== null ? 'NaN' : StringCtor(NumberCtor(a));
          case 'i':
            if (typeof a === 'bigint') return `${a}n`;
            return StringCtor(parseInt(a, 10));
          case 'f': return StringCtor(parseFloat(a));
          case 'j':
            try { return JSONstringify(a); } catch (e) { return '[Circular]'; }
          case 'o': case 'O': return inspect(a, 4, []);
          case 'c': return '';
        }
        return m;
      });
      for (; i < args.length; i++) out += ' ' + fmtArg(args[i]);
      return out;
    }
    function promisify(fn) {
      if (typeof fn !== 'function') throw new TypeErrorCtor2('The "original" argument must be a function');
      return function (...args) {
        return new Promise((resolve, reject) => {
          apply(fn, this, [...args, (err, value) => (err ? reject(err) : resolve(value))]);
        });
      };
    }
    function inherits(ctor, superCtor) {
      if (typeof ctor !== 'function' || typeof superCtor !== 'function' || !superCtor.prototype) {
        throw new TypeErrorCtor2('util.inherits needs two constructors, the second with a prototype');
      }
      defineProperty(ctor, 'super_', {value: superCtor, writable: true, configurable: true});
      Object.setPrototypeOf(ctor.prototype, superCtor.prototype);
    }
    function deprecate(fn) { return fn; }
    const util = {format, inspect: (v) => inspect(v), promisify, inherits, deprecate, TextEncoder, TextDecoder};

    // ---- percent-encoding, querystring, URLSearchParams
    function percentDecode(s) {
      if (s.indexOf('%') < 0) return s;
      const bytes = utf8Bytes(s);
      const out = new U8(bytes.length);
      let n = 0;
      for (let i = 0; i < bytes.length; i++) {
        const c = bytes[i];
        if (c === 37 && i + 2 < bytes.length) {
          const hi = hexValue(bytes[i + 1]);
          const lo = hexValue(bytes[i + 2]);
          if (hi >= 0 && lo >= 0) {
            out[n++] = hi * 16 + lo;
            i += 2;
            continue;
          }
        }
        out[n++] = c;
      }
      return natives.utf8Decode(out.subarray(0, n));
    }
    // Encodes every byte outside `keep` (a string of ASCII characters kept as they are).
    function percentEncode(s, keep, spaceAsPlus) {
      const bytes = utf8Bytes(s);
      let out = '';
      for (let i = 0; i < bytes.length; i++) {
        const c = bytes[i];
        if ((c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) ||
            (c < 128 && keep.indexOf(fromCharCode(c)) >= 0)) {
          out += fromCharCode(c);
        } else if (c === 32 && spaceAsPlus) {
          out += '+';
        } else {
          out += '%' + HEX[c >> 4].toUpperCase() + HEX[c & 15].toUpperCase();
        }
      }
      return out;
    }
    const FORM_KEEP = '*-._';
    function formDecode(s) { return percentDecode(s.replace(/\+/g, ' ')); }
    function formEncode(s) { return percentEncode(s, FORM_KEEP, true); }

    const querystring = {
      escape(s) { return percentEncode(StringCtor(s), "-_.!~*'()", false); },
      unescape(s) { return percentDecode(StringCtor(s)); },
      parse(s, sep = '&', eq = '=', options = {}) {
        const out = Object.create(null);
        if (typeof s !== 'string' || s.length === 0) return out;
        const maxKeys = options && typeof options.maxKeys === 'number' ? options.maxKeys : 1000;
        let parts = s.split(sep);
        if (maxKeys > 0 && parts.length > maxKeys) parts = parts.slice(0, maxKeys);
        for (const part of parts) {
          if (!part) continue;
          const at = part.indexOf(eq);
          const k = formDecode(at >= 0 ? part.slice(0, at) : part);
          const v = at >= 0 ? formDecode(part.slice(at + eq.length)) : '';
          const prev = out[k];
          if (prev === undefined) out[k] = v;
          else if (Array.isArray(prev)) prev.push(v);
          else out[k] = [prev, v];
        }
        return out;
      },
      stringify(obj, sep = '&', eq = '=') {
        if (obj === null || typeof obj !== 'object') return '';
        const prim = (v) => (typeof v === 'string' || typeof v === 'number' && isFinite(v) ||
          typeof v === 'bigint' || typeof v === 'boolean' ? querystring.escape(StringCtor(v)) : '');
        const out = [];
        for (const k of Object.keys(obj)) {
          const v = obj[k];
          const ek = querystring.escape(k) + eq;
          if (Array.isArray(v)) for (const x of v) out.push(ek + prim(x));
          else out.push(ek + prim(v));
        }
        return out.join(sep);
      },
    };
    querystring.decode = querystring.parse;
    querystring.encode = querystring.stringify;

    class URLSearchParams {
      constructor(init) {
        this._list = [];
        this._url = null;
        if (init === undefined || init === null) return;
        if (init instanceof URLSearchParams) {
          this._list = init._list.map((p) => [p[0], p[1]]);
        } else if (typeof init === 'object' && typeof init[Symbol.iterator] === 'function') {
          for (const pair of init) {
            const p = Array.from(pair);
            if (p.length !== 2) throw new TypeErrorCtor2('Each query pair must be an iterable [name, value] tuple');
            this._list.push([StringCtor(p[0]), StringCtor(p[1])]);
          }
        } else if (typeof init === 'object') {
          for (const k of Object.keys(init)) this._list.push([k, StringCtor(init[k])]);
        } else {
          this._parse(StringCtor(init));
        }
      }
      _parse(s) {
        this._list = [];
        if (s.startsWith('?')) s = s.slice(1);
        for (const part of s.split('&')) {
          if (!part) continue;
          const at = part.indexOf('=');
          this._list.push(at >= 0 ? [formDecode(part.slice(0, at)), formDecode(part.slice(at + 1))] : [formDecode(part), '']);
        }
      }
      _update() { if (this._url) this._url._setQueryFromParams(this.toString()); }
      get size() { return this._list.length; }
      append(k, v) { this._list.push([StringCtor(k), StringCtor(v)]); this._update(); }
      delete(k, v) {
        k = StringCtor(k);
        this._list = this._list.filter((p) => p[0] !== k || (v !== undefined && p[1] !== StringCtor(v)));
        this._update();
      }
      get(k) { k = StringCtor(k); const p = this._list.find((x) => x[0] === k); return p ? p[1] : null; }
      getAll(k) { k = StringCtor(k); return this._list.filter((x) => x[0] === k).map((x) => x[1]); }
      has(k, v) { k = StringCtor(k); return this._list.some((x) => x[0] === k && (v === undefined || x[1] === StringCtor(v))); }
      set(k, v) {
        k = StringCtor(k);
        v = StringCtor(v);
        const i = this._list.findIndex((x) => x[0] === k);
        if (i < 0) this._list.push([k, v]);
        else this._list = this._list.filter((x, j) => j <= i || x[0] !== k).map((x, j) => (j === i ? [k, v] : x));
        this._update();
      }
      sort() {
        this._list = this._list.map((p, i) => [p, i]).sort((a, b) => (a[0][0] < b[0][0] ? -1 : a[0][0] > b[0][0] ? 1 : a[1] - b[1])).map((x) => x[0]);
        this._update();
      }
      forEach(fn, thisArg) { for (const [k, v] of this._list) apply(fn, thisArg, [v, k, this]); }
      keys() { return this._list.map((p) => p[0])[Symbol.iterator](); }
      values() { return this._list.map((p) => p[1])[Symbol.iterator](); }
      entries() { return this._list.map((p) => [p[0], p[1]])[Symbol.iterator](); }
      [Symbol.iterator]() { return this.entries(); }
      toString() { return this._list.map((p) => formEncode(p[0]) + '=' + formEncode(p[1])).join('&'); }
    }

    // ---- URL (WHATWG URL for the common cases; see src/functions/README.md for what it omits)
    const SPECIAL = {'http:': '80', 'https:': '443', 'ws:': '80', 'wss:': '443', 'ftp:': '21', 'file:': ''};
    // Percent-encode sets (WHATWG): C0 controls, space, DEL and non-ASCII always; plus these.
    const FRAGMENT_SET = '"<>`';
    const QUERY_SET = '"#<>';
    const SPECIAL_QUERY_SET = '"#<>\'';
    const PATH_SET = '"#<>?^`{}';
    const USERINFO_SET = '"#<>?^`{}/:;=@[\\]|';
    // `set` null: the C0 control set (opaque paths keep spaces).
    function encodeSet(s, set) {
      let out = '';
      for (let i = 0; i < s.length; i++) {
        const c = s.charCodeAt(i);
        if (set === null ? c >= 0x20 && c < 0x7f : c > 0x20 && c < 0x7f && set.indexOf(s[i]) < 0) {
          out += s[i];
        } else if (c < 0x80) {
          out += '%' + HEX[c >> 4].toUpperCase() + HEX[c & 15].toUpperCase();
        } else {
          let j = i + 1;
          while (j < s.length && s.charCodeAt(j) >= 0x80) j++;
          out += percentEncode(s.slice(i, j), '', false);
          i = j - 1;
        }
      }
      return out;
    }
    function isSpecial(protocol) { return Object.prototype.hasOwnProperty.call(SPECIAL, protocol); }
    function invalidUrl(input) {
      const e = new TypeErrorCtor2(`Invalid URL: ${str(input)}`);
      e.code = 'ERR_INVALID_URL';
      return e;
    }
    function parseHost(h, special, input) {
      if (h.startsWith('[')) {
        if (!/^\[[0-9A-Fa-f:.]+\]$/.test(h)) throw invalidUrl(input);
        return h.toLowerCase();
      }
      if (!special) {
        if (/[\x00\t\n\r #/:<>?@[\\\]^|]/.test(h)) throw invalidUrl(input);
        return encodeSet(h, '');
      }
      h = percentDecode(h).toLowerCase();
      if (/[\x00-\x20#%/:<>?@[\\\]^|\x7f]/.test(h)) throw invalidUrl(input);
      if (/[^\x00-\x7f]/.test(h)) throw invalidUrl(input);  // no IDNA (punycode) here
      return h;
    }
    function normalisePath(segments) {
      const out = [];
      for (let i = 0; i < segments.length; i++) {
        const s = segments[i];
        const last = i === segments.length - 1;
        const l = s.toLowerCase();
        if (s === '..' || l === '.%2e' || l === '%2e.' || l === '%2e%2e') {
          if (out.length) out.pop();
          if (last) out.push('');
        } else if (s === '.' || l === '%2e') {
          if (last) out.push('');
        } else {
          out.push(encodeSet(s, PATH_SET));
        }
      }
      return out;
    }
    function parseUrl(input, base) {
      let rest = StringCtor(input).replace(/^[\x00-\x20]+|[\x00-\x20]+$/g, '').replace(/[\t\n\r]/g, '');
      const u = {protocol: '', username: '', password: '', hostname: '', port: '', path: [],
        opaque: null, query: null, fragment: null, hasHost: false};
      const m = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(rest);
      if (m) {
        u.protocol = m[1].toLowerCase() + ':';
        rest = rest.slice(m[0].length);
      } else if (!base) {
        throw invalidUrl(input);
      }
      const special = isSpecial(u.protocol || base.protocol);
      const split = special ? /[/\\]/ : '/';
      const hashAt = rest.indexOf('#');
      if (hashAt >= 0) { u.fragment = encodeSet(rest.slice(hashAt + 1), FRAGMENT_SET); rest = rest.slice(0, hashAt); }
      const qAt = rest.indexOf('?');
      if (qAt >= 0) { u.query = encodeSet(rest.slice(qAt + 1), special ? SPECIAL_QUERY_SET : QUERY_SET); rest = rest.slice(0, qAt); }
      const startsSlash = special ? /^[/\\]/.test(rest) : rest.startsWith('/');
      const startsTwo = special ? /^[/\\]{2}/.test(rest) : rest.startsWith('//');
      // Relative to `base`: no scheme, or a special scheme equal to the base's without a slash.
      if (!m || (special && base && base.protocol === u.protocol && !startsSlash)) {
        if (!base) throw invalidUrl(input);
        u.protocol = base.protocol;
        if (base.opaque !== null) {
          if (rest !== '') throw invalidUrl(input);
          u.opaque = base.opaque;
          if (qAt < 0) u.query = base.query;
          return u;
        }
        if (!startsTwo) {
          u.username = base.username; u.password = base.password; u.hostname = base.hostname;
          u.port = base.port; u.hasHost = base.hasHost;
          if (rest === '') {
            u.path = base.path.slice();
            if (qAt < 0) u.query = base.query;
          } else if (startsSlash) {
            u.path = normalisePath(rest.slice(1).split(split));
          } else {
            u.path = normalisePath([...base.path.slice(0, -1), ...rest.split(split)]);
          }
          return u;
        }
      }
      let authority = false;
      if (u.protocol === 'file:') {
        if (startsTwo) { rest = rest.slice(2); authority = true; }
      } else if (special) {
        rest = rest.replace(/^[/\\]*/, '');
        authority = true;
      } else if (startsTwo) {
        rest = rest.slice(2);
        authority = true;
      }
      if (authority) {
        const end = rest.search(split);
        let auth = end >= 0 ? rest.slice(0, end) : rest;
        rest = end >= 0 ? rest.slice(end) : '';
        const at = auth.lastIndexOf('@');
        if (at >= 0) {
          const cred = auth.slice(0, at);
          auth = auth.slice(at + 1);
          const colon = cred.indexOf(':');
          u.username = encodeSet(colon >= 0 ? cred.slice(0, colon) : cred, USERINFO_SET);
          u.password = colon >= 0 ? encodeSet(cred.slice(colon + 1), USERINFO_SET) : '';
        }
        const afterV6 = auth.startsWith('[') ? auth.indexOf(']') + 1 : 0;
        const colon = auth.indexOf(':', afterV6);
        if (colon >= 0) {
          const port = auth.slice(colon + 1);
          auth = auth.slice(0, colon);
          if (!/^\d*$/.test(port) || (port !== '' && NumberCtor(port) > 65535)) throw invalidUrl(input);
          if (port !== '') {
            const p = StringCtor(NumberCtor(port));
            u.port = p === SPECIAL[u.protocol] ? '' : p;
          }
        }
        if (auth === '' && special && u.protocol !== 'file:') throw invalidUrl(input);
        u.hostname = auth === '' ? '' : parseHost(auth, special, input);
        u.hasHost = true;
        u.path = rest === '' ? (special ? [''] : []) : normalisePath(rest.slice(1).split(split));
      } else if (special || rest.startsWith('/')) {
        u.hasHost = special;
        u.path = normalisePath((rest.startsWith('/') || /^\\/.test(rest) ? rest.slice(1) : rest).split(split));
      } else {
        u.opaque = encodeSet(rest, null);
      }
      return u;
    }

    class URL {
      constructor(input, base) {
        const b = base === undefined ? undefined : (base instanceof URL ? base._u : parseUrl(base));
        this._u = parseUrl(input, b);
        this._params = new URLSearchParams(this._u.query || '');
        this._params._url = this;
      }
      static canParse(input, base) {
        try { new URL(input, base); return true; } catch (e) { return false; }
      }
      _setQueryFromParams(q) { this._u.query = q === '' ? null : q; }
      get href() {
        const u = this._u;
        let out = u.protocol;
        if (u.hasHost) {
          out += '//';
          if (u.username || u.password) out += u.username + (u.password ? ':' + u.password : '') + '@';
          out += this.host;
        }
        out += this.pathname;
        if (u.query !== null) out += '?' + u.query;
        if (u.fragment !== null) out += '#' + u.fragment;
        return out;
      }
      set href(v) {
        this._u = parseUrl(v);
        this._params._parse(this._u.query || '');
      }
      get protocol() { return this._u.protocol; }
      get username() { return this._u.username; }
      set username(v) { this._u.username = encodeSet(StringCtor(v), USERINFO_SET); }
      get password() { return this._u.password; }
      set password(v) { this._u.password = encodeSet(StringCtor(v), USERINFO_SET); }
      get hostname() { return this._u.hostname; }
      set hostname(v) {
        this._u.hostname = parseHost(StringCtor(v), isSpecial(this._u.protocol), v);
      }
      get port() { return this._u.port; }
      set port(v) {
        const s = StringCtor(v);
        if (s === '') { this._u.port = ''; return; }
        const d = /^\d+/.exec(s);
        if (!d || NumberCtor(d[0]) > 65535) return;
        const p = StringCtor(NumberCtor(d[0]));
        this._u.port = p === SPECIAL[this._u.protocol] ? '' : p;
      }
      get host() { return this._u.hostname + (this._u.port ? ':' + this._u.port : ''); }
      get origin() {
        const u = this._u;
        return isSpecial(u.protocol) && u.protocol !== 'file:' ? u.protocol + '//' + this.host : 'null';
      }
      get pathname() {
        const u = this._u;
        if (u.opaque !== null) return u.opaque;
        return u.path.length ? '/' + u.path.join('/') : '';
      }
      set pathname(v) {
        if (this._u.opaque !== null) return;
        const special = isSpecial(this._u.protocol);
        let s = StringCtor(v);
        if (s.startsWith('/') || (special && s.startsWith('\\'))) s = s.slice(1);
        this._u.path = normalisePath(s.split(special ? /[/\\]/ : '/'));
      }
      get search() { return this._u.query ? '?' + this._u.query : ''; }
      set search(v) {
        let s = StringCtor(v);
        if (s.startsWith('?')) s = s.slice(1);
        this._u.query = s === '' ? null : encodeSet(s, isSpecial(this._u.protocol) ? SPECIAL_QUERY_SET : QUERY_SET);
        this._params._parse(s);
      }
      get searchParams() { return this._params; }
      get hash() { return this._u.fragment ? '#' + this._u.fragment : ''; }
      set hash(v) {
        let s = StringCtor(v);
        if (s.startsWith('#')) s = s.slice(1);
        this._u.fragment = s === '' ? null : encodeSet(s, FRAGMENT_SET);
      }
      toString() { return this.href; }
      toJSON() { return this.href; }
    }

    const buffer = {Buffer, kMaxLength, constants: {MAX_LENGTH: kMaxLength}};
    const url = {URL, URLSearchParams};
    return {Buffer, TextEncoder, TextDecoder, URL, URLSearchParams,
      modules: {crypto, buffer, util, querystring, url}};
  }

  // Made on first use, so a context that never touches them (every test invoke makes a fresh
  // one) pays nothing for them.
  let nodeMade;
  function node() {
    if (!nodeMade) nodeMade = nodeBuiltins(natives);
    return nodeMade;
  }
  for (const name of ['Buffer', 'TextEncoder', 'TextDecoder', 'URL', 'URLSearchParams']) {
    defineProperty(g, name, {
      get() { return node()[name]; },
      set(v) { defineProperty(g, name, {value: v, writable: true, configurable: true}); },
      configurable: true,
    });
  }

  // require: only the allowed modules (spec 4.11); each instance is created once per context.
  const modules = new MapCtor();
  const libNames = ['lodash', 'luxon', 'oauth-1.0a', 'jsonwebtoken'];
  const allowed = 'lp-faas-toolbelt, lodash, luxon, oauth-1.0a, jsonwebtoken, crypto, buffer, util, querystring, url';
  const nodeModuleNames = ['crypto', 'buffer', 'util', 'querystring', 'url'];
  // Libraries of LivePerson's list (spec 4.11) that cannot run here, and why.
  const unavailableLibs = {
    jsforce: 'it is a Salesforce client that makes its own HTTP connections (Node http/https), which ' +
             'functions do not have; call the Salesforce REST API with Toolbelt.HTTPClient instead',
  };
  function notAvailable(name) {
    const why = typeof name === 'string' && Object.prototype.hasOwnProperty.call(unavailableLibs, name)
      ? `: ${unavailableLibs[name]}` : `; allowed: ${allowed}`;
    return new ErrorCtor(`module '${str(name)}' is not available in Parley functions${why}`);
  }
  // What a bundled library's own require reaches: the Node built-ins and the other libraries.
  function libRequire(name) {
    if (typeof name === 'string' && name !== 'lp-faas-toolbelt') return require(name);
    throw notAvailable(name);
  }
  function require(name) {
    if (typeof name !== 'string') throw new TypeErrorCtor('require expects a module name string');
    const cached = apply(MapGet, modules, [name]);
    if (cached) return cached.exports;
    let module;
    if (name === 'lp-faas-toolbelt') {
      const factory = natives.loadModule('toolbelt');
      module = {exports: factory(natives)};
    } else if (nodeModuleNames.includes(name.startsWith('node:') ? name.slice(5) : name)) {
      module = {exports: node().modules[name.startsWith('node:') ? name.slice(5) : name]};
    } else if (libNames.includes(name)) {
      const wrapper = natives.loadModule(name);
      module = {exports: {}};
      apply(wrapper, module.exports, [module.exports, libRequire, module, name + '.js', '/']);
    } else {
      throw notAvailable(name);
    }
    apply(MapSet, modules, [name, module]);
    return module.exports;
  }
  g.require = require;

  // Entry points for the engine.
  let lambdaFn;
  function kindOf(e) {
    if (e instanceof TypeErrorCtor || e instanceof SyntaxErrorCtor || e instanceof ReferenceErrorCtor) {
      return 1;  // runtime-exception
    }
    if (e instanceof ErrorCtor) return 2;  // custom-failure
    return 3;  // custom-failure, incorrect format
  }
  function messageOf(e) {
    if (e instanceof ErrorCtor) {
      try {
        return str(e.name) + ': ' + str(e.message);
      } catch (x) {
        return 'Error';
      }
    }
    return describe(e);
  }
  // Sources of a completion: 0 callback, 1 thrown or rejected.
  function finish(id, err, result) {
    if (err !== null && err !== undefined) {
      natives.done(id, kindOf(err), 0, messageOf(err), '');
      return;
    }
    let json;
    try {
      json = JSONstringify(result);
    } catch (e) {
      natives.done(id, 4, 0, messageOf(e), '');
      return;
    }
    natives.done(id, 0, 0, '', json === undefined ? 'null' : json);
  }
  function run(id, input) {
    let value;
    try {
      value = JSONparse(input);
    } catch (e) {
      natives.done(id, 6, 1, messageOf(e), '');
      return;
    }
    const callback = function callback(err, result) { finish(id, err, result); };
    let ret;
    try {
      ret = lambdaFn(value, callback);
    } catch (e) {
      natives.done(id, 5, 1, messageOf(e), '');
      return;
    }
    if (ret !== null && typeof ret === 'object' && typeof ret.then === 'function') {
      ret.then(undefined, (e) => natives.done(id, kindOf(e), 1, messageOf(e), ''));
    }
  }
  function fireTimer(id) {
    const t = apply(MapGet, timers, [id]);
    if (!t) return;
    if (!t.repeat) apply(MapDelete, timers, [id]);
    apply(t.fn, undefined, t.args);
  }
  function dropTimers(ids) {
    for (let i = 0; i < ids.length; i++) apply(MapDelete, timers, [ids[i]]);
  }
  function setLambda(fn) { lambdaFn = fn; }
  return {run, fireTimer, dropTimers, setLambda};
})

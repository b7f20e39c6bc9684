// Oversized requests are refused before they leave: a 1 MiB header value, 101 headers, a URL
// over 16,384 characters, a body one byte over the limit (4 KiB here: http_max_body_bytes). A
// body of exactly the limit still goes out.
const { Toolbelt } = require('lp-faas-toolbelt');
const request = Toolbelt.HTTPClient();
async function attempt(o) {
  try {
    await request(o);
    return 'sent';
  } catch (e) {
    return e.name + (e.message.indexOf('limit') >= 0 ? ' (limit)' : ': ' + e.message);
  }
}
async function lambda(input, callback) {
  const base = process.env.TEST_HTTP_URL;
  const many = {};
  for (let i = 0; i < 101; i++) many['X-' + i] = 'v';
  const out = {
    hugeHeader: await attempt({uri: base + '/status/200', headers: {'X-Big': 'v'.repeat(1 << 20)}}),
    manyHeaders: await attempt({uri: base + '/status/200', headers: many}),
    longUrl: await attempt({uri: base + '/status/200?' + 'q'.repeat(16384)}),
    bodyOverLimit: await attempt({uri: base + '/status/200', method: 'POST', body: 'b'.repeat(4097)}),
    bodyAtLimit: await attempt({uri: base + '/status/200', method: 'POST', body: 'b'.repeat(4096)}),
  };
  const log = await request({uri: base + '/log', json: true});
  callback(null, {out, log});
}

// CR, LF and NUL in what a function sends must never reach the wire: a header value, a header
// name, the method or the URL carrying "\r\n" would let a function smuggle a second request
// (with another Host) to an allowlisted server.
const { Toolbelt } = require('lp-faas-toolbelt');
const request = Toolbelt.HTTPClient();
const smuggle = 'GET /smuggled HTTP/1.1\r\nHost: evil.test\r\n\r\n';
async function lambda(input, callback) {
  const base = process.env.TEST_HTTP_URL;
  const attempts = [
    {uri: base + '/echo', headers: {'X-A': 'x\r\nX-Injected: 1'}},
    {uri: base + '/echo', headers: {'X-A': 'x\r\n\r\n' + smuggle}},
    {uri: base + '/echo', headers: {'X-A': 'x\n' + smuggle}},
    {uri: base + '/echo', headers: {'X-A': 'x\r' + smuggle}},
    {uri: base + '/echo', headers: {'X-A\r\nHost: evil.test\r\nX-B': 'x'}},
    {uri: base + '/echo', headers: {'X A': 'x'}},
    {uri: base + '/echo', headers: {'X-A:': 'x'}},
    {uri: base + '/echo', headers: {'': 'x'}},
    {uri: base + '/echo', headers: {'X-A': 'x\u0000y'}},
    {uri: base + '/echo', method: 'GET /smuggled HTTP/1.1\r\nHost: evil.test\r\n\r\nGET'},
    {uri: base + '/echo', method: 'G T'},
    {uri: base + '/echo\r\nHost: evil.test'},
  ];
  const refused = [];
  for (const o of attempts) {
    try {
      await request(o);
      refused.push('sent');
    } catch (e) {
      refused.push(e.name);
    }
  }
  // A header with ordinary characters (incl. a tab) still goes out.
  const ok = await request({uri: base + '/echo', headers: {'X-Fine': 'a\tb c'}, json: true});
  const log = await request({uri: base + '/log', json: true});
  callback(null, {refused, ok: ok.path, log});
}

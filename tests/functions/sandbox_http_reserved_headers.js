// The platform owns the framing of outbound requests: a function may not set Host (another
// virtual host behind an allowlisted name), Content-Length / Transfer-Encoding (body framing)
// or Connection and the other hop-by-hop headers. Each attempt fails with a RequestError that
// names the header; nothing is sent.
const { Toolbelt } = require('lp-faas-toolbelt');
const request = Toolbelt.HTTPClient();
async function lambda(input, callback) {
  const base = process.env.TEST_HTTP_URL;
  const names = ['Host', 'host', 'HOST', 'Content-Length', 'transfer-encoding', 'Connection',
                 'Keep-Alive', 'Proxy-Connection', 'Upgrade', 'TE', 'Trailer'];
  const out = {};
  for (const name of names) {
    try {
      await request({uri: base + '/echo', method: 'POST', body: 'x',
                     headers: {[name]: name.toLowerCase() === 'content-length' ? '0' : 'evil.test'}});
      out[name] = 'sent';
    } catch (e) {
      out[name] = e.name + (e.message.indexOf(name) >= 0 && e.message.indexOf('set by the platform') >= 0
                            ? ' naming the header' : ': ' + e.message);
    }
  }
  const log = await request({uri: base + '/log', json: true});
  callback(null, {out, log});
}

// Every redirect hop is checked again after resolution: a server the operator opened
// (127.0.0.2/32 here) that redirects to a loopback address (by name or by literal) does not
// get the function into loopback.
const { Toolbelt } = require('lp-faas-toolbelt');
const request = Toolbelt.HTTPClient();
async function lambda(input, callback) {
  const open = process.env.TEST_HTTP_URL2;
  const port = process.env.TEST_HTTP_PORT;
  const direct = await request({uri: open + '/echo', json: true});
  const targets = ['http://localhost:' + port + '/echo', 'http://127.0.0.1:' + port + '/echo',
                   'http://2130706433:' + port + '/echo', 'http://[::ffff:127.0.0.1]:' + port + '/echo'];
  const out = [];
  for (const t of targets) {
    try {
      await request({uri: open + '/redirect?to=' + encodeURIComponent(t), timeout: 1000});
      out.push('followed to ' + t);
    } catch (e) {
      out.push(e.name === 'RequestError' && e.message.indexOf('loopback') >= 0 ? 'refused' : e.name + ': ' + e.message);
    }
  }
  callback(null, {direct: direct.path, redirects: out});
}

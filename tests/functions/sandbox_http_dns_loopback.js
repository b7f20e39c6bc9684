// An allowlisted name that resolves to a loopback address is refused after resolution (here
// "localhost" -> 127.0.0.1), before any connection: an open and a closed port give the same
// error, so a function cannot port-scan the server's host either.
const { Toolbelt } = require('lp-faas-toolbelt');
const request = Toolbelt.HTTPClient();
async function attempt(url) {
  try {
    await request({uri: url, timeout: 1000});
    return 'reached';
  } catch (e) {
    return e.name + ': ' + e.message;
  }
}
async function lambda(input, callback) {
  const open = await attempt('http://localhost:' + process.env.TEST_HTTP_PORT + '/echo');
  const closed = await attempt('http://localhost:1/echo');
  callback(null, {
    open: open.startsWith('RequestError') && open.indexOf('127.0.0.1') >= 0 && open.indexOf('loopback') >= 0
        ? 'refused (loopback)' : open,
    sameErrorForOpenAndClosedPort: open.replace(process.env.TEST_HTTP_PORT, '1') === closed || closed === open,
  });
}

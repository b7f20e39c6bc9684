// The Toolbelt runs inside the function's context, so a function can subvert it: here
// JSON.stringify is replaced before the Toolbelt loads, and the Toolbelt then sends whatever
// text the function chooses to the server. The server's own checks still refuse injected
// headers, platform headers, bad methods and malformed header lists, and the Toolbelt's exports
// are frozen.
const realStringify = JSON.stringify;
let forged = null;
JSON.stringify = function (value, ...rest) {
  if (forged !== null) {
    const text = forged;
    forged = null;
    return text;
  }
  return realStringify(value, ...rest);
};
const toolbelt = require('lp-faas-toolbelt');
const request = toolbelt.Toolbelt.HTTPClient();
async function send(args) {
  forged = realStringify(args);
  try {
    await request(process.env.TEST_HTTP_URL + '/echo');
    return 'sent';
  } catch (e) {
    return e.name;
  }
}
async function lambda(input, callback) {
  const url = process.env.TEST_HTTP_URL + '/echo';
  const out = {
    crlfValue: await send({method: 'GET', url, headers: [['X-A', 'a\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: evil.test\r\n\r\n']], body: ''}),
    hostHeader: await send({method: 'GET', url, headers: [['Host', 'evil.test']], body: ''}),
    crlfMethod: await send({method: 'GET /smuggled HTTP/1.1\r\nHost: evil.test\r\n\r\nGET', url, headers: [], body: ''}),
    badHeaderList: await send({method: 'GET', url, headers: [['X-A']], body: ''}),
    headerNotString: await send({method: 'GET', url, headers: [['X-A', 1]], body: ''}),
    fileUrl: await send({method: 'GET', url: 'file:///etc/passwd', headers: [], body: ''}),
  };
  let frozen;
  try {
    'use strict';
    toolbelt.Toolbelt.HTTPClient = null;
    frozen = toolbelt.Toolbelt.HTTPClient === null ? 'replaced' : 'frozen';
  } catch (e) {
    frozen = 'frozen';
  }
  const log = await request({uri: url.replace('/echo', '/log'), json: true});
  callback(null, {out, frozen, log});
}

// Only http: and https: URLs: file:, gopher:, ftp:, data:, javascript:, unix-socket forms and
// URLs without a host fail with a RequestError before anything is opened, also as a redirect
// target.
const { Toolbelt } = require('lp-faas-toolbelt');
const request = Toolbelt.HTTPClient();
async function lambda(input, callback) {
  const base = process.env.TEST_HTTP_URL;
  const urls = ['file:///etc/passwd', 'FILE:///etc/passwd', 'gopher://localhost:25/_HELO', 'ftp://localhost/',
                'data:text/plain,hi', 'javascript:alert(1)', 'http://unix:/var/run/docker.sock:/info',
                'unix:///var/run/docker.sock', 'http+unix://%2Fvar%2Frun%2Fdocker.sock/info',
                'dict://localhost:11211/stat', 'ldap://localhost/', 'http:///etc/passwd', '//localhost/x',
                '/etc/passwd'];
  const out = [];
  for (const u of urls) {
    try {
      await request({uri: u, timeout: 500});
      out.push(u + ' fetched');
    } catch (e) {
      out.push(e.name);
    }
  }
  // A redirect to file: from an allowed server is refused the same way.
  let redirect;
  try {
    await request(base + '/redirect?to=' + encodeURIComponent('file:///etc/passwd'));
    redirect = 'fetched';
  } catch (e) {
    redirect = e.name + (e.message.indexOf('only http and https') >= 0 ? ' (scheme)' : ': ' + e.message);
  }
  const log = await request({uri: base + '/log', json: true});
  callback(null, {out, redirect, log});
}

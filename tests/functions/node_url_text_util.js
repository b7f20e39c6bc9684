// URL, URLSearchParams, TextEncoder/TextDecoder, util.format and querystring as functions use
// them: reading query parameters of a webhook URL, building an API URL, form bodies.
const util = require('util');
const querystring = require('querystring');
const { URL: URLFromModule } = require('url');
function lambda(input, callback) {
  const u = new URL(input.payload.url);
  const api = new URL('/v1/items/../orders', 'https://api.example.com/base/');
  api.searchParams.set('customer', 'Zoë & Co');
  api.searchParams.append('tag', 'a b');
  let invalid;
  try { new URL('not a url'); } catch (e) { invalid = e.name; }
  const bytes = new TextEncoder().encode('grüße');
  callback(null, {
    code: u.searchParams.get('code'), state: u.searchParams.get('state'), missing: u.searchParams.get('x'),
    all: u.searchParams.getAll('scope'), host: u.host, hostname: u.hostname, port: u.port,
    pathname: u.pathname, search: u.search, hash: u.hash, origin: u.origin, protocol: u.protocol,
    api: api.href, apiJson: JSON.stringify({ u: api }),
    params: new URLSearchParams({ grant_type: 'client_credentials', scope: 'faas.lambda.invoke' }).toString(),
    entries: [...new URLSearchParams('a=1&b=two%20words&a=3')],
    invalid, canParse: [URL.canParse('https://x.example'), URL.canParse('nope')],
    sameUrl: URLFromModule === URL,
    encoded: Array.from(bytes), decoded: new TextDecoder().decode(bytes), encoding: new TextDecoder().encoding,
    format: util.format('%s has %d items costing %f, %j', 'cart', 3, 9.5, { id: 7 }),
    formatExtra: util.format('a', 'b', 42), percent: util.format('100%% %s', 'done'),
    qsParse: Object.assign({}, querystring.parse('a=1&b=x%20y&a=2&c=')),
    qsStringify: querystring.stringify({ q: 'red shoes', page: 2, tags: ['a', 'b'] }),
  });
}

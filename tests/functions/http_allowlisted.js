const { Toolbelt } = require('lp-faas-toolbelt');
const request = Toolbelt.HTTPClient();
async function lambda(input, callback) {
  const base = process.env.TEST_HTTP_URL;
  const get = await request(base + '/echo', {json: true, qs: {q: 'a b'}});
  const post = await request({uri: base + '/echo', method: 'POST', body: {x: 1}, json: true,
                              resolveWithFullResponse: true});
  const redirected = await request(base + '/redirect', {json: true});
  let notFound;
  try { await request(base + '/status/404'); } catch (e) { notFound = {name: e.name, statusCode: e.statusCode}; }
  const lenient = await request({uri: base + '/status/500', simple: false, resolveWithFullResponse: true});
  callback(null, {get, postStatus: post.statusCode, postBody: post.body.body, redirected: redirected.path,
                  notFound, lenient: lenient.statusCode});
}

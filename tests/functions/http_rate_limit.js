const { Toolbelt } = require('lp-faas-toolbelt');
const request = Toolbelt.HTTPClient();
async function lambda(input, callback) {
  const url = process.env.TEST_HTTP_URL + '/echo';
  const results = await Promise.all(Array.from({length: 45}, () =>
      request({uri: url, simple: false, resolveWithFullResponse: true}).then((r) => r.statusCode)));
  const ok = results.filter((s) => s === 200).length;
  const limited = results.filter((s) => s === 429).length;
  callback(null, {total: ok + limited, atLeastFiveLimited: limited >= 5, atMost40Ok: ok <= 40});
}

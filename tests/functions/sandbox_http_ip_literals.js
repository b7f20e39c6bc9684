// IP literals of internal ranges, in every spelling a resolver accepts, are refused after
// resolution (the allowlist here lists them all, as a careless or old allowlist might).
const { Toolbelt } = require('lp-faas-toolbelt');
const request = Toolbelt.HTTPClient();
async function lambda(input, callback) {
  const port = process.env.TEST_HTTP_PORT;
  const urls = [
    ['http://127.0.0.1:' + port + '/echo', 'loopback'],
    ['http://2130706433:' + port + '/echo', 'loopback'],
    ['http://0x7f000001:' + port + '/echo', 'loopback'],
    ['http://0177.0.0.1:' + port + '/echo', 'loopback'],
    ['http://127.1:' + port + '/echo', 'loopback'],
    ['http://0:' + port + '/echo', 'unspecified'],
    ['http://0.0.0.0:' + port + '/echo', 'unspecified'],
    ['http://[::1]:' + port + '/echo', 'loopback'],
    ['http://[::ffff:127.0.0.1]:' + port + '/echo', 'loopback'],
    ['http://[::ffff:7f00:1]:' + port + '/echo', 'loopback'],
    ['http://[::]:' + port + '/echo', 'unspecified'],
    ['http://169.254.169.254/latest/meta-data/', 'metadata'],
    ['http://[fd00:ec2::254]/latest/meta-data/', 'metadata'],
    ['http://[::ffff:169.254.169.254]/', 'metadata'],
    ['http://169.254.1.1/', 'link-local'],
    ['http://[fe80::1]/', 'link-local'],
    ['http://10.0.0.1/', 'private'],
    ['http://172.16.5.4/', 'private'],
    ['http://192.168.1.1/', 'private'],
    ['http://[fd12:3456::1]/', 'private'],
    ['http://100.64.0.1/', 'CGNAT'],
    ['http://224.0.0.1/', 'multicast'],
    ['http://[ff02::1]/', 'multicast'],
    ['http://255.255.255.255/', 'broadcast'],
    ['http://240.0.0.1/', 'reserved'],
    ['http://192.0.2.1/', 'reserved'],
  ];
  const out = [];
  for (const [i, [url, range]] of urls.entries()) {
    // Stay under the 20 requests per second rate limit.
    if (i > 0 && i % 15 === 0) await new Promise((resolve) => setTimeout(resolve, 1100));
    try {
      await request({uri: url, timeout: 300});
      out.push(url + ' reached');
    } catch (e) {
      out.push(e.name === 'RequestError' && e.message.indexOf(range) >= 0
               ? 'refused ' + range : url + ' ' + e.name + ': ' + e.message);
    }
  }
  callback(null, out);
}

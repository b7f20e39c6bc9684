// oauth-1.0a as LivePerson's examples use it: HMAC-SHA1 through crypto.createHmac, then
// oauth.toHeader(oauth.authorize(request, token)). Nonce and timestamp are fixed to the
// published vectors: Twitter's "Creating a signature" example and RFC 5849 section 1.2.
const OAuth = require('oauth-1.0a');
const crypto = require('crypto');

function client(key, secret) {
  return OAuth({
    consumer: {key, secret},
    signature_method: 'HMAC-SHA1',
    hash_function(baseString, signingKey) {
      return crypto.createHmac('sha1', signingKey).update(baseString).digest('base64');
    },
  });
}

function lambda(input, callback) {
  const twitter = client('xvz1evFS4wEEPTGEFPHBog', 'kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw');
  twitter.getNonce = () => 'kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg';
  twitter.getTimeStamp = () => 1318622958;
  const request = {
    url: 'https://api.twitter.com/1.1/statuses/update.json?include_entities=true',
    method: 'POST',
    data: {status: 'Hello Ladies + Gentlemen, a signed OAuth request!'},
  };
  const token = {key: '370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb',
                 secret: 'LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE'};
  const header = twitter.toHeader(twitter.authorize(request, token));

  const rfc = client('dpf43f3p2l4k3l03', 'kd94hf93k423kf44');
  rfc.getNonce = () => 'kllo9940pd9333jh';
  rfc.getTimeStamp = () => 1191242096;
  const rfcAuth = rfc.authorize({url: 'http://photos.example.net/photos', method: 'GET',
                                 data: {file: 'vacation.jpg', size: 'original'}},
                                {key: 'nnch734d00sl2jdk', secret: 'pfkkdhi9sl3r4s00'});

  // Unfixed nonce and timestamp: present and well-formed.
  const live = client('k', 's').authorize({url: 'https://example.com/a', method: 'GET'});
  let missingHash;
  try {
    OAuth({consumer: {key: 'k', secret: 's'}, signature_method: 'HMAC-SHA1'});
  } catch (e) {
    missingHash = e.message;
  }
  callback(null, {
    header,
    rfcSignature: rfcAuth.oauth_signature,
    live: {nonce: /^[A-Za-z0-9]{32}$/.test(live.oauth_nonce),
           timestamp: Math.abs(live.oauth_timestamp - Date.now() / 1000) < 600},
    missingHash,
  });
}

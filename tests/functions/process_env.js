function lambda(input, callback) {
  process.env.LOCAL = 'changed';
  callback(null, {greeting: process.env.GREETING, brand: process.env.BRAND_ID,
                  uuid: process.env.LAMBDA_UUID, missing: process.env.NOPE === undefined,
                  local: process.env.LOCAL, keys: Object.keys(process.env).sort()});
}

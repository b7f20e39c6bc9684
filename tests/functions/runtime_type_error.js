function lambda(input, callback) {
  if (input.payload.viaCallback) return callback(new TypeError('bad type'));
  const x = undefined;
  callback(null, x.property);
}

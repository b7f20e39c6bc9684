function lambda(input, callback) {
  if (input.payload.kind === 'bigint') return callback(null, {n: 10n});
  const a = {}; a.self = a;
  callback(null, a);
}

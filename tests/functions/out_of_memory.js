const keep = [];
function lambda(input, callback) {
  if (!input.payload.grow) return callback(null, 'small');
  const a = [];
  for (;;) a.push({i: a.length, s: 'x' + a.length});
}

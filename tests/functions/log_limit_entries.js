function lambda(input, callback) {
  for (let i = 0; i < input.payload.n; i++) console.info('line ' + i);
  callback(null, 'done');
}

function lambda(input, callback) {
  console.info('a'.repeat(3000));
  console.info('b'.repeat(input.payload.more));
  callback(null, 'done');
}

function lambda(input, callback) {
  console.debug('dropped in production');
  console.info('kept');
  callback(null, 'ok');
}

function lambda(input, callback) {
  console.debug('dbg');
  console.info('info', {a: 1});
  console.log('log');
  console.warn('warn', 1, 'two');
  console.error(new Error('err'));
  callback(null, 'ok');
}

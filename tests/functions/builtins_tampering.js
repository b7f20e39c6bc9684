function lambda(input, callback) {
  JSON.stringify = () => { throw new Error('hijacked'); };
  JSON.parse = () => ({});
  Map.prototype.get = () => { while (true) {} };
  callback(null, {still: 'works'});
}

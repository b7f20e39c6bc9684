function lambda(input, callback) {
  try { require(input.payload.module); callback(null, 'loaded'); }
  catch (e) { callback(null, e.message); }
}

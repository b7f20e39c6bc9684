function lambda(input, callback) {
  callback(null, typeof input.payload);
}

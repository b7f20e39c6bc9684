function lambda(input, callback) {
  callback('just a string');
}

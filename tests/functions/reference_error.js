function lambda(input, callback) {
  callback(null, notDefinedAnywhere + 1);
}

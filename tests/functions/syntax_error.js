function lambda(input, callback) {
  const x = ;
  callback(null, x);
}

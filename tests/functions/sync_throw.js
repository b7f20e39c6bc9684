function lambda(input, callback) {
  throw new Error('thrown synchronously');
}

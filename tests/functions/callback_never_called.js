function lambda(input, callback) {
  console.info('forgot to call back');
}

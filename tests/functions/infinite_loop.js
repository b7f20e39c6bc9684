function lambda(input, callback) {
  if (input.payload.loop) { while (true) {} }
  callback(null, 'fine');
}

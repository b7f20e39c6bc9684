function lambda(input, callback) {
  setInterval(() => {}, 20);
}

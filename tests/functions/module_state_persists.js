let count = 0;
function lambda(input, callback) {
  count++;
  callback(null, count);
}

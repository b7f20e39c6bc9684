// One allocation far beyond the heap cap: V8 must stop the function, not the process.
function lambda(input, callback) {
  if (!input.payload.big) return callback(null, 'small');
  const a = new Array(2 ** 26).fill(1.5);
  callback(null, a.length);
}

// Timers for timing attacks: there is no high-resolution clock (no performance.now, no
// process.hrtime); Date has whole milliseconds, as everywhere in JavaScript.
function lambda(input, callback) {
  const now = Date.now();
  callback(null, {
    performance: typeof performance,
    hrtime: typeof process.hrtime,
    dateIsWholeMs: Number.isInteger(now) && Number.isInteger(new Date().valueOf()),
  });
}

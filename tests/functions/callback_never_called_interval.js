// An interval keeps the invocation pending forever; the deadline (300 ms) ends it. The cadence
// leaves 20 ms between the last tick (280 ms) and the deadline, so the deadline finds the worker
// waiting, not inside the tick (that would be a termination, a different outcome).
function lambda(input, callback) {
  setInterval(() => {}, 70);
}

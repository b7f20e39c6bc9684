function lambda(input, callback) {
  callback(null, {payload: input.payload, headers: input.headers, ts: input.timestamp});
}

function lambda(input, callback) {
  class BotError extends Error {}
  callback(input.payload.sub ? new BotError('sub-class') : new Error('my failure'));
}

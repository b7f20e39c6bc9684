// Values built to break the engine while it serialises a result, an error or a log entry:
// throwing getters and toJSON, proxies whose traps throw, toString/valueOf that throw. Each
// invocation fails cleanly (or logs a placeholder); the engine keeps serving.
const boom = () => { throw new Error('boom'); };
const cases = {
  getter: () => ({get x() { return boom(); }}),
  toJSON: () => ({toJSON: boom}),
  proxy: () => new Proxy({}, {ownKeys: boom, get: boom, getOwnPropertyDescriptor: boom}),
  nested: () => [{a: {get b() { return boom(); }}}],
};
function lambda(input, callback) {
  const which = input.payload.case;
  if (which === 'errorGetters') {
    const e = new Error('x');
    Object.defineProperty(e, 'name', {get: boom});
    Object.defineProperty(e, 'message', {get: boom});
    return callback(e);
  }
  if (which === 'errorProxy') {
    return callback(new Proxy(new Error('p'), {get: boom, getPrototypeOf: boom}));
  }
  if (which === 'log') {
    const evil = {toString: boom, valueOf: boom, toJSON: boom};
    console.info(evil, evil, {get y() { return boom(); }});
    return callback(null, 'logged');
  }
  callback(null, cases[which]());
}

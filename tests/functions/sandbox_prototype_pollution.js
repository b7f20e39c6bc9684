// A function that poisons the built-ins of its own context (Object/Array/Function/Promise/JSON
// prototypes, setters that would catch the engine's objects) affects neither the engine's
// handling of its results nor any other function (checked by the runner's "other" function,
// deployed and invoked on the same worker afterwards).
let caught = [];
function lambda(input, callback) {
  // Null-prototype descriptors: Object.prototype.value (installed below) would otherwise make
  // every later descriptor look like a data descriptor.
  const grab = (name) => Object.assign(Object.create(null), {
    configurable: true,
    get() { return undefined; },
    set(v) { caught.push(name); },
  });
  for (const name of ['loadModule', 'done', 'timer', 'call', 'log', 'exports', 'fn', 'args', 'repeat',
                      'ok', 'value', 'code', 'message', 'then', 'statusCode']) {
    Object.defineProperty(Object.prototype, name, grab(name));
  }
  Object.prototype.polluted = 'yes';
  Array.prototype.polluted = 'yes';
  Object.prototype.toJSON = undefined;
  Array.prototype.push = function () { throw new Error('push poisoned'); };
  Array.prototype.map = function () { throw new Error('map poisoned'); };
  Array.prototype.slice = function () { throw new Error('slice poisoned'); };
  Function.prototype.call = function () { throw new Error('call poisoned'); };
  Function.prototype.apply = function () { throw new Error('apply poisoned'); };
  Function.prototype.bind = function () { throw new Error('bind poisoned'); };
  Reflect.apply = function () { throw new Error('Reflect.apply poisoned'); };
  Promise.prototype.then = function () { throw new Error('then poisoned'); };
  Promise.resolve = function () { throw new Error('resolve poisoned'); };
  JSON.stringify = function () { return '"forged"'; };
  JSON.parse = function () { return {forged: true}; };
  Map.prototype.get = function () { throw new Error('Map.get poisoned'); };
  Map.prototype.set = function () { throw new Error('Map.set poisoned'); };
  String = function () { return 'forged'; };
  Error = function () { return {}; };
  setTimeout(() => {
    console.info('logged', {n: 1});
    callback(null, {n: input.payload.n, caughtEngineObjects: caught.length});
  }, 1);
}

// No code from strings and no way around it: eval, Function and its async/generator siblings
// (reached through any constructor chain), string timers and dynamic import() are all refused,
// so `this.constructor.constructor('return process')()` and friends lead nowhere.
function attempt(fn) {
  try {
    const v = fn();
    if (v && typeof v.then === 'function') return 'promise';
    return 'ran';
  } catch (e) {
    return e.name;
  }
}
async function lambda(input, callback) {
  const self = this;
  const out = {
    constructorChain: attempt(() => self.constructor.constructor('return process')()),
    globalConstructor: attempt(() => globalThis.constructor.constructor('return this')()),
    functionCtor: attempt(() => Function('return 1')()),
    reflectConstruct: attempt(() => Reflect.construct(Function, ['return 1'])()),
    asyncFunctionCtor: attempt(() => Object.getPrototypeOf(async function () {}).constructor('return 1')),
    generatorCtor: attempt(() => Object.getPrototypeOf(function* () {}).constructor('yield 1')),
    asyncGeneratorCtor: attempt(() => Object.getPrototypeOf(async function* () {}).constructor('yield 1')),
    inputConstructor: attempt(() => input.constructor.constructor('return 1')()),
    callbackConstructor: attempt(() => callback.constructor('return 1')()),
    directEval: attempt(() => eval('1')),
    indirectEval: attempt(() => (0, eval)('1')),
    stringTimeout: attempt(() => setTimeout('1', 1)),
    stringInterval: attempt(() => setInterval('1', 1)),
  };
  let imported;
  try {
    await import('fs');
    imported = 'loaded';
  } catch (e) {
    imported = 'rejected';
  }
  out.dynamicImport = imported;
  callback(null, out);
}

// Parley function bootstrap. Runs once per context, before the function's code, as
// `(function (natives, env) {...})`. It installs what a function sees (console, timers,
// process.env, require) and returns the entry points the engine calls. Built-ins are captured
// here, before user code can replace them.
(function (natives, env) {
  'use strict';
  const g = globalThis;
  const apply = Reflect.apply;
  const defineProperty = Object.defineProperty;
  const JSONparse = JSON.parse;
  const JSONstringify = JSON.stringify;
  const StringCtor = String;
  const NumberCtor = Number;
  const ErrorCtor = Error;
  const TypeErrorCtor = TypeError;
  const SyntaxErrorCtor = SyntaxError;
  const ReferenceErrorCtor = ReferenceError;
  const MapCtor = Map;
  const MapGet = Map.prototype.get;
  const MapSet = Map.prototype.set;
  const MapDelete = Map.prototype.delete;
  const ArraySlice = Array.prototype.slice;
  const PromiseResolve = Promise.resolve.bind(Promise);
  const PromiseThen = Promise.prototype.then;

  delete g.WebAssembly;
  defineProperty(g, 'global', {value: g, writable: true, configurable: true});

  function str(v) {
    try {
      return StringCtor(v);
    } catch (e) {
      return '[unprintable]';
    }
  }
  function describe(v) {
    if (typeof v === 'string') return v;
    if (v instanceof ErrorCtor) return str(v.stack || v);
    try {
      const s = JSONstringify(v);
      return s === undefined ? str(v) : s;
    } catch (e) {
      return str(v);
    }
  }

  // console: Debug=0, Info=1, Warn=2, Error=3.
  function logAt(level) {
    return function (...args) {
      const message = args.length ? describe(args[0]) : '';
      let extras = '[]';
      if (args.length > 1) {
        const rest = apply(ArraySlice, args, [1]);
        try {
          extras = JSONstringify(rest);
        } catch (e) {
          extras = JSONstringify(rest.map(describe));
        }
      }
      natives.log(level, message, extras);
    };
  }
  const console = {
    debug: logAt(0), trace: logAt(0), info: logAt(1), log: logAt(1), warn: logAt(2), error: logAt(3),
  };
  defineProperty(g, 'console', {value: console, writable: true, configurable: true});

  // Timers run on the invocation's event loop in the engine; the callbacks stay here.
  const timers = new MapCtor();
  function addTimer(repeat, fn, ms, args) {
    if (typeof fn !== 'function') {
      throw new TypeErrorCtor('The "callback" argument must be of type function');
    }
    let delay = NumberCtor(ms);
    if (!(delay >= 1)) delay = repeat ? 1 : 0;
    if (delay > 2147483647) delay = 1;
    const id = natives.timer(delay, repeat);
    apply(MapSet, timers, [id, {fn, args, repeat}]);
    return id;
  }
  function clearTimer(id) {
    if (apply(MapDelete, timers, [id])) natives.clearTimer(id);
  }
  g.setTimeout = function setTimeout(fn, ms, ...args) { return addTimer(false, fn, ms, args); };
  g.setInterval = function setInterval(fn, ms, ...args) { return addTimer(true, fn, ms, args); };
  g.setImmediate = function setImmediate(fn, ...args) { return addTimer(false, fn, 0, args); };
  g.clearTimeout = clearTimer;
  g.clearInterval = clearTimer;
  g.clearImmediate = clearTimer;
  g.queueMicrotask = function queueMicrotask(fn) {
    if (typeof fn !== 'function') throw new TypeErrorCtor('queueMicrotask expects a function');
    apply(PromiseThen, PromiseResolve(), [() => fn()]);
  };

  g.process = {
    env,
    nextTick(fn, ...args) { apply(PromiseThen, PromiseResolve(), [() => apply(fn, undefined, args)]); },
  };

  // require: only the allowed modules (spec 4.11); each instance is created once per context.
  const modules = new MapCtor();
  const allowed = 'lp-faas-toolbelt, lodash, luxon';
  function notAvailable(name) {
    return new ErrorCtor(`module '${str(name)}' is not available in Parley functions; allowed: ${allowed}`);
  }
  function libRequire(name) { throw notAvailable(name); }
  function require(name) {
    if (typeof name !== 'string') throw new TypeErrorCtor('require expects a module name string');
    const cached = apply(MapGet, modules, [name]);
    if (cached) return cached.exports;
    let module;
    if (name === 'lp-faas-toolbelt') {
      const factory = natives.loadModule('toolbelt');
      module = {exports: factory(natives)};
    } else if (name === 'lodash' || name === 'luxon') {
      const wrapper = natives.loadModule(name);
      module = {exports: {}};
      apply(wrapper, module.exports, [module.exports, libRequire, module, name + '.js', '/']);
    } else {
      throw notAvailable(name);
    }
    apply(MapSet, modules, [name, module]);
    return module.exports;
  }
  g.require = require;

  // Entry points for the engine.
  let lambdaFn;
  function kindOf(e) {
    if (e instanceof TypeErrorCtor || e instanceof SyntaxErrorCtor || e instanceof ReferenceErrorCtor) {
      return 1;  // runtime-exception
    }
    if (e instanceof ErrorCtor) return 2;  // custom-failure
    return 3;  // custom-failure, incorrect format
  }
  function messageOf(e) {
    if (e instanceof ErrorCtor) {
      try {
        return str(e.name) + ': ' + str(e.message);
      } catch (x) {
        return 'Error';
      }
    }
    return describe(e);
  }
  // Sources of a completion: 0 callback, 1 thrown or rejected.
  function finish(id, err, result) {
    if (err !== null && err !== undefined) {
      natives.done(id, kindOf(err), 0, messageOf(err), '');
      return;
    }
    let json;
    try {
      json = JSONstringify(result);
    } catch (e) {
      natives.done(id, 4, 0, messageOf(e), '');
      return;
    }
    natives.done(id, 0, 0, '', json === undefined ? 'null' : json);
  }
  function run(id, input) {
    let value;
    try {
      value = JSONparse(input);
    } catch (e) {
      natives.done(id, 6, 1, messageOf(e), '');
      return;
    }
    const callback = function callback(err, result) { finish(id, err, result); };
    let ret;
    try {
      ret = lambdaFn(value, callback);
    } catch (e) {
      natives.done(id, 5, 1, messageOf(e), '');
      return;
    }
    if (ret !== null && typeof ret === 'object' && typeof ret.then === 'function') {
      ret.then(undefined, (e) => natives.done(id, kindOf(e), 1, messageOf(e), ''));
    }
  }
  function fireTimer(id) {
    const t = apply(MapGet, timers, [id]);
    if (!t) return;
    if (!t.repeat) apply(MapDelete, timers, [id]);
    apply(t.fn, undefined, t.args);
  }
  function dropTimers(ids) {
    for (let i = 0; i < ids.length; i++) apply(MapDelete, timers, [ids[i]]);
  }
  function setLambda(fn) { lambdaFn = fn; }
  return {run, fireTimer, dropTimers, setLambda};
})

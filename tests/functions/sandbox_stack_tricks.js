// Stack traces do not hand out the engine's functions or objects: with a custom
// Error.prepareStackTrace every call site of an error raised inside the platform's code (a
// refused require, a native that throws, a toolbelt call) gives no function and no receiver
// that is not the function's own; .caller and .arguments lead nowhere either.
const own = new Set();
function isOwn(fn) { return own.has(fn); }
const nativeKeys = ['loadModule', 'done', 'timer', 'clearTimer', 'call', 'log', 'fireTimer', 'setLambda'];
function leaky(v) {
  if (v === undefined || v === null || v === globalThis) return false;
  if (typeof v === 'function') return !isOwn(v);
  if (typeof v === 'object') return nativeKeys.some((k) => Object.prototype.hasOwnProperty.call(v, k));
  return false;
}
function inspect(trigger) {
  let sites = [];
  Error.prepareStackTrace = (err, callSites) => { sites = callSites; return 'x'; };
  try {
    trigger();
  } catch (e) {
    void e.stack;
  }
  Error.prepareStackTrace = undefined;
  const leaks = [];
  for (const s of sites) {
    if (leaky(s.getFunction())) leaks.push('function of ' + s.getFunctionName());
    if (leaky(s.getThis())) leaks.push('receiver of ' + s.getFunctionName());
  }
  return {frames: sites.length > 0, leaks};
}
async function lambda(input, callback) {
  own.add(lambda).add(isOwn).add(leaky).add(inspect);
  const { Toolbelt } = require('lp-faas-toolbelt');
  // Errors made inside the toolbelt, caught and rethrown: their stacks were captured there.
  const httpError = await Toolbelt.HTTPClient()({}).catch((e) => e);
  const secretError = await Toolbelt.SecretClient().readSecret('').catch((e) => e);
  const triggers = {
    require: () => require('fs'),
    requireType: () => require(1),
    timerType: () => setTimeout(null, 1),
    queueMicrotask: () => queueMicrotask(1),
    httpOptions: () => { throw httpError; },
    secretKey: () => { throw secretError; },
  };
  for (const f of Object.values(triggers)) own.add(f);
  // Control: a sloppy function the detector does not know is reported (the check can fail).
  triggers.control = function notOwn() { throw new Error('x'); };
  const out = {};
  for (const [name, t] of Object.entries(triggers)) out[name] = inspect(t);
  // Sloppy functions called back by the engine (timer, microtask) see no caller.
  const callerOfTimer = await new Promise((resolve) => {
    function tick() { resolve(tick.caller === null ? 'null' : typeof tick.caller); }
    own.add(tick);
    setTimeout(tick, 1);
  });
  const callerOfMicrotask = await new Promise((resolve) => {
    function task() { resolve(task.caller === null ? 'null' : typeof task.caller); }
    own.add(task);
    queueMicrotask(task);
  });
  let callbackCaller;
  try { callbackCaller = typeof callback.caller; } catch (e) { callbackCaller = e.name; }
  let callbackArguments;
  try { callbackArguments = typeof callback.arguments; } catch (e) { callbackArguments = e.name; }
  out.callerOfTimer = callerOfTimer;
  out.callerOfMicrotask = callerOfMicrotask;
  out.callbackCaller = callbackCaller;
  out.callbackArguments = callbackArguments;
  callback(null, out);
}

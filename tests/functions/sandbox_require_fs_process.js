// No way to the file system, the process or child processes: require() knows only the allowed
// modules (lp-faas-toolbelt, lodash, luxon and the byte/text built-ins crypto, buffer, util,
// querystring, url; no path, no other built-in), and process has only env and nextTick. Buffer is
// the only Node global.
function tryRequire(name) {
  try {
    require(name);
    return 'loaded';
  } catch (e) {
    return e.message.indexOf('is not available in Parley functions') >= 0 ? 'refused' : e.name + ': ' + e.message;
  }
}
function lambda(input, callback) {
  const modules = ['fs', 'node:fs', 'fs/promises', 'child_process', 'node:child_process', 'net',
                   'dgram', 'dns', 'http', 'https', 'http2', 'tls', 'os', 'vm', 'module',
                   'worker_threads', 'cluster', 'process', 'v8', 'inspector', 'perf_hooks',
                   'async_hooks', 'crypto', 'buffer', '/etc/passwd', '../../../../etc/passwd',
                   './toolbelt', 'lp-faas-toolbelt/../fs', 'LODASH', 'lodash/fp'];
  const required = {};
  for (const m of modules) required[m] = tryRequire(m);
  let nonString;
  try { require({toString() { return 'fs'; }}); nonString = 'loaded'; } catch (e) { nonString = e.name; }
  const props = {};
  for (const p of ['binding', '_linkedBinding', 'dlopen', 'kill', 'exit', 'abort', 'cwd', 'chdir',
                   'umask', 'getuid', 'setuid', 'stdout', 'stdin', 'mainModule', 'versions',
                   'hrtime', 'memoryUsage', 'cpuUsage', 'resourceUsage', 'emitWarning', 'on', 'argv',
                   'execPath', 'pid', 'ppid', 'platform', 'report', 'openStdin', 'reallyExit']) {
    props[p] = typeof process[p];
  }
  callback(null, {
    required, nonString, props,
    processKeys: Object.keys(process).sort(),
    requireProps: Object.getOwnPropertyNames(require).filter((k) => k !== 'length' && k !== 'name' && k !== 'prototype').sort(),
    globals: ['module', 'exports', '__dirname', '__filename', 'Buffer', 'natives', 'fetch',
              'XMLHttpRequest', 'WebSocket', 'importScripts', 'postMessage', 'print', 'read',
              'readbuffer', 'load', 'quit', 'os', 'd8', 'performance', 'WebAssembly']
      .filter((g) => typeof globalThis[g] !== 'undefined'),
    envKeys: Object.keys(process.env).filter((k) => !k.startsWith('TEST_HTTP_')).sort(),
  });
}

import { defineConfig, type Plugin } from 'vite';

// json-pollock publishes its renderer without the schema validator (the validator compiles
// schemas with `new Function`, which the Content-Security-Policy refuses) only as a script that
// assigns `this.JsonPollock`; this turns that file into an ES module with a default export.
const POLLOCK_GLOBAL = /json-pollock[\\/]dist[\\/]json-pollock\.global\.no_validation\.min\.js$/;
function jsonPollockModule(): Plugin {
  return {
    name: 'parley-json-pollock-module',
    enforce: 'pre',
    transform(code, id) {
      if (!POLLOCK_GLOBAL.test(id.split('?')[0])) return null;
      const head = 'this.JsonPollock=';
      if (!code.startsWith(head)) this.error(`json-pollock: ${id} does not start with "${head}"; check the json-pollock version`);
      return { code: `const JsonPollock=${code.slice(head.length)}\n;export default JsonPollock;\n`, map: null };
    },
  };
}

// The server serves web/dist at `/` with an SPA fallback; the API is same-origin.
// `PARLEY_DEV_TARGET=https://127.0.0.1:8443 npm run dev` proxies the API to a running server.
const target = process.env.PARLEY_DEV_TARGET ?? 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [jsonPollockModule()],
  optimizeDeps: { exclude: ['json-pollock'] },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2020',
    sourcemap: false,
    chunkSizeWarningLimit: 700,
  },
  server: {
    proxy: {
      '/api': { target, changeOrigin: true, secure: false },
      '/ws_api': { target, ws: true, changeOrigin: true, secure: false },
    },
  },
  test: {
    environment: 'node',
    include: ['src/**/*.test.ts'],
  },
});

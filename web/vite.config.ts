import { defineConfig } from 'vite';

// The server serves web/dist at `/` with an SPA fallback; the API is same-origin.
// `PARLEY_DEV_TARGET=https://127.0.0.1:8443 npm run dev` proxies the API to a running server.
const target = process.env.PARLEY_DEV_TARGET ?? 'http://127.0.0.1:8080';

export default defineConfig({
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

/// <reference types="vite/client" />
// json-pollock's build without its schema validator, made an ES module by vite.config.ts.
declare module 'json-pollock/dist/json-pollock.global.no_validation.min.js';

/// <reference types="vite/client" />
declare module 'json-pollock/dist/json-pollock.min.js';

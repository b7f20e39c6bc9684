function lambda(input, callback) {
  callback(null, {exit: typeof process.exit, binding: typeof process.binding, buffer: typeof Buffer,
                  wasm: typeof WebAssembly, fetch: typeof fetch, g: typeof global});
}

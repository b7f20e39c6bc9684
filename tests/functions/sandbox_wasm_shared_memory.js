// No WebAssembly (no second code generator to reach natives or spray the heap) and no
// blocking waits: Atomics.wait is refused, so a function cannot park its worker thread.
function lambda(input, callback) {
  let wait;
  try {
    const sab = new SharedArrayBuffer(16);
    wait = Atomics.wait(new Int32Array(sab), 0, 0, 10);
  } catch (e) {
    wait = e.name;
  }
  let wasmViaProto;
  try {
    wasmViaProto = typeof Object.getPrototypeOf(globalThis).WebAssembly;
  } catch (e) {
    wasmViaProto = e.name;
  }
  callback(null, {wasm: typeof WebAssembly, wasmViaProto, wait});
}

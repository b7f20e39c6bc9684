function lambda(input, callback) {
  try { new ArrayBuffer(1024 * 1024 * 1024); callback(null, 'allocated'); }
  catch (e) { callback(null, e.name); }
}

function lambda(input, callback) {
  try { while (true) {} } catch (e) { callback(null, 'caught'); }
  finally { callback(null, 'finally'); }
}

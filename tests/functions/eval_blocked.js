function lambda(input, callback) {
  const out = [];
  try { eval('1 + 1'); out.push('eval ran'); } catch (e) { out.push(e.name); }
  try { new Function('return 1')(); out.push('Function ran'); } catch (e) { out.push(e.name); }
  try { setTimeout('1+1', 1); out.push('string timer'); } catch (e) { out.push(e.name); }
  callback(null, out);
}

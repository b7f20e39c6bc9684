function lambda(input, callback) {
  const order = [];
  setTimeout(() => order.push('t30'), 30);
  setTimeout(() => order.push('t10'), 10);
  const cancelled = setTimeout(() => order.push('cancelled'), 5);
  clearTimeout(cancelled);
  setImmediate(() => order.push('immediate'));
  Promise.resolve().then(() => order.push('micro'));
  process.nextTick(() => order.push('tick'));
  let n = 0;
  const iv = setInterval(() => { order.push('iv' + (++n)); if (n === 3) clearInterval(iv); }, 7);
  setTimeout(() => callback(null, order), 80);
  order.push('sync');
}

function lambda(input, callback) {
  const order = [];
  setTimeout(() => order.push('t70'), 70);
  setTimeout(() => order.push('t30'), 30);
  const cancelled = setTimeout(() => order.push('cancelled'), 5);
  clearTimeout(cancelled);
  setImmediate(() => order.push('immediate'));
  Promise.resolve().then(() => order.push('micro'));
  process.nextTick(() => order.push('tick'));
  let n = 0;
  const iv = setInterval(() => { order.push('iv' + (++n)); if (n === 3) clearInterval(iv); }, 20);
  setTimeout(() => callback(null, order), 150);
  order.push('sync');
}

async function lambda(input, callback) {
  await Promise.resolve();
  if (input.payload.kind === 'type') null.boom;
  throw new Error('rejected on purpose');
}

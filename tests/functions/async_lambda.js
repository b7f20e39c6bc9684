async function lambda(input, callback) {
  const v = await new Promise((resolve) => setTimeout(() => resolve(input.payload.n * 2), 10));
  await null;
  callback(null, {doubled: v});
  return 'ignored';
}

async function lambda(input, callback) {
  await new Promise(() => {});
}

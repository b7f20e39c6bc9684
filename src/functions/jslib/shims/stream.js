// `stream` for the bundled libraries. jws defines its streaming signer and verifier
// (jws.createSign, jws.createVerify) on Node's Stream; Parley functions have no streams, so
// constructing one fails with an error naming what to use instead. Defining the classes (at
// load time) only needs a constructor with a prototype.
function Stream() {
  throw new Error(
      "module 'stream' is not available in Parley functions, so jws.createSign and " +
      'jws.createVerify cannot be used; use jwt.sign / jwt.verify (or jws.sign / jws.verify)');
}
module.exports = Stream;
module.exports.Stream = Stream;

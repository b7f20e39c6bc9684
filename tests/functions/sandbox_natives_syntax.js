// V8's %-intrinsics are not enabled: code that uses them does not even deploy.
function lambda(input, callback) {
  callback(null, %GetOptimizationStatus(lambda));
}

function handler(input, callback) { callback(null, 1); }

const config = JSON.parse('{not json');
function lambda(input, callback) { callback(null, config); }

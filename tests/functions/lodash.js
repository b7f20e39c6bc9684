const _ = require('lodash');
function lambda(input, callback) {
  callback(null, {chunk: _.chunk([1, 2, 3, 4, 5], 2), picked: _.pick(input.payload, ['a']),
                  camel: _.camelCase('hello big world'), version: _.VERSION, same: require('lodash') === _});
}

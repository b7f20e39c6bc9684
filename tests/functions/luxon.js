const { DateTime, Duration } = require('luxon');
function lambda(input, callback) {
  const d = DateTime.fromISO('2024-03-10T12:00:00Z', {zone: 'utc'});
  callback(null, {iso: d.plus({days: 1, hours: 2}).toISO(), weekday: d.weekdayLong,
                  dur: Duration.fromObject({minutes: 90}).as('hours'),
                  ny: d.setZone('America/New_York').toFormat('yyyy-MM-dd HH:mm')});
}

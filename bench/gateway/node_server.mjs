// The plain Node comparison server for compare.mjs: `node node_server.mjs <lambda file>` loads
// the lambda (a CommonJS file that ends with `module.exports = lambda`), answers every POST with
// lambda(JSON body) as JSON on 127.0.0.1 (port 0), and prints {"port": n} once listening. No
// sandbox, no auth: the floor a sandboxed server is compared against.
import http from 'node:http';
import { createRequire } from 'node:module';

const lambda = createRequire(import.meta.url)(process.argv[2]);
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let input;
    try {
      input = JSON.parse(Buffer.concat(chunks).toString());
    } catch {
      res.writeHead(400).end('{"error":"bad json"}');
      return;
    }
    lambda(input, (err, result) => {
      const body = err ? JSON.stringify({ error: String(err) }) : JSON.stringify(result ?? null);
      res.writeHead(err ? 500 : 200, { 'content-type': 'application/json' }).end(body);
    });
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })));

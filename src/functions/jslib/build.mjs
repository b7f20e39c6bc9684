// Bundles the npm libraries that are more than one file into one CommonJS file each under
// dist/, which the build compiles into the parley binary (src/functions/CMakeLists.txt).
// Node built-ins stay `require` calls, answered at run time by Parley's own modules
// (crypto, buffer, util), and so does lodash; `stream` is replaced by shims/stream.js. Run by `npm ci`
// (postinstall) and `npm run build`.
import * as esbuild from 'esbuild';
import {mkdirSync} from 'node:fs';
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
mkdirSync(join(here, 'dist'), {recursive: true});

for (const name of ['jsonwebtoken']) {
  await esbuild.build({
    entryPoints: [join(here, 'node_modules', name)],
    outfile: join(here, 'dist', name + '.js'),
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'es2021',
    alias: {stream: join(here, 'shims', 'stream.js')},
    // lodash is embedded on its own; the bundle asks for it like a function does.
    external: ['lodash'],
    legalComments: 'inline',
    logLevel: 'warning',
  });
}

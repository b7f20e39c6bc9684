#!/usr/bin/env bash
# One command: install everything, build, and start `parley serve --demo` on its embedded
# defaults (SQLite in ./parley-data, self-signed TLS generated on first start) with the console
# built in web/dist. Idempotent. Needs nothing outside the repository.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
"$here/tools/setup.sh"
"$here/tools/build.sh" default
cd "$here"
exec build/default/src/app/parley serve --demo --data "${PARLEY_DATA:-$here/parley-data}" \
  --web "$here/web/dist" "$@"

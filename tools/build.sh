#!/usr/bin/env bash
# Builds Parley (C++ with the given CMake preset, default "default") and the web console.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
preset="${1:-default}"
cd "$here"
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j"$(nproc)"
if [ -f web/package.json ] && [ "$preset" = default ]; then
  (cd web && npm run build --silent)
fi

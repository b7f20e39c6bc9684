#!/usr/bin/env bash
# Installs everything Parley needs to build, test and run on Debian 12. Idempotent.
#
# V8: Debian's libnode-dev conflicts with a third-party Node.js (e.g. NodeSource's nodejs 20)
# that many machines carry. We never touch the system Node: the libnode108 and libnode-dev
# .debs are downloaded with `apt-get download` and unpacked with `dpkg -x` into
# third_party/libnode/ (build-local prefix); the binary links to it with an rpath.
# The runtime dependencies of libnode108 (libuv1, libicu72, ...) come from apt as usual.
#
# PostgreSQL: libpq-dev for the PostgreSQL store; libnats-dev (nats.c) for the NATS bus; the server package for the tests labelled
# `postgres`, which run their own server from /usr/lib/postgresql/15/bin as the `postgres` user
# the package creates (the package's own cluster is not used). nats-server and haproxy: the local
# cluster of tools/cluster.sh and its test (label `cluster`).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

pkgs=(build-essential cmake ninja-build pkg-config git ca-certificates curl
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev libssl-dev libsqlite3-dev sqlite3
  libpq-dev postgresql nats-server libnats-dev haproxy
  libsodium-dev libspdlog-dev libfmt-dev libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev
  clang-format ccache libjemalloc-dev libseccomp-dev clang-16 libclang-rt-16-dev
  libbrotli1 libc-ares2 libicu72 libnghttp2-14 libuv1 zlib1g
  chromium)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
# Node.js + npm: keep whatever node is on PATH if it has npm; otherwise Debian's.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then missing+=(nodejs npm); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq || true
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# libnode (V8) into a build-local prefix.
ln_dir="$here/third_party/libnode"
if [ ! -f "$ln_dir/.done" ]; then
  rm -rf "$ln_dir" && mkdir -p "$ln_dir/debs"
  (cd "$ln_dir/debs" && apt-get download libnode108 libnode-dev >/dev/null)
  for d in "$ln_dir"/debs/*.deb; do dpkg -x "$d" "$ln_dir/root"; done
  # libnode.so is the dev symlink; make sure it points inside our prefix.
  lib="$ln_dir/root/usr/lib/x86_64-linux-gnu"
  [ -e "$lib/libnode.so" ] || ln -sf libnode.so.108 "$lib/libnode.so"
  touch "$ln_dir/.done"
fi

# npm packages for tests and the web console (lockfiles pinned).
for d in tests/js web src/functions/jslib tests/e2e; do
  if [ -f "$here/$d/package.json" ]; then
    (cd "$here/$d" && if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --loglevel=error; else npm install --no-audit --no-fund --loglevel=error; fi)
  fi
done
echo "setup: ok"

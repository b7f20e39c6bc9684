#!/usr/bin/env bash
# install_test.sh SOURCE BUILD LIBNODE_ROOT SHARED NODE
# Installs BUILD into a temporary prefix and runs install_check.js against PREFIX/bin/parley with
# SOURCE, BUILD, LIBNODE_ROOT and SHARED hidden (see CMakeLists.txt).
set -euo pipefail
src="$(realpath "$1")"
build="$(realpath "$2")"
libnode="$(realpath "$3")"
shared="$4"
node="$5"
here="$(cd "$(dirname "$0")" && pwd)"

if [ "$(id -u)" != 0 ]; then
  echo "install test: needs root (a private mount namespace hides the source tree)" >&2
  exit 1
fi
tmp="$(mktemp -d "${TMPDIR:-/tmp}/parley-install-XXXXXX")"
case "$tmp" in "$src"/* | "$build"/*)
  echo "install test: the temporary folder $tmp is inside the tree it hides; set TMPDIR" >&2
  exit 1 ;;
esac
trap 'rm -rf "$tmp"' EXIT

# The console is installed from web/dist (tools/build.sh builds it); build it when missing.
# (CTest runs this and the browser test, which may build it too, one at a time: RESOURCE_LOCK.)
if [ ! -f "$src/web/dist/index.html" ]; then
  echo "install test: building the console (web/dist)"
  (cd "$src/web" && npm run build --silent) || {
    echo "install test: the console did not build; run tools/setup.sh, then tools/build.sh" >&2
    exit 1
  }
fi
cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1 || {
  cat "$tmp/install.log" >&2
  exit 1
}
# The client: install_check.js with the tests/js consumer and its one npm package (ws).
mkdir -p "$tmp/client/node_modules"
cp "$here/install_check.js" "$tmp/client/"
cp -r "$src/tests/js/lib" "$tmp/client/lib"
cp -r "$src/tests/js/node_modules/ws" "$tmp/client/node_modules/ws"

candidates=("$src" "$build" "$libnode")
[ -d "$shared" ] && candidates+=("$(realpath "$shared")")
[ -d "$src/../shared" ] && candidates+=("$(realpath "$src/../shared")")
# A folder inside another hidden one is hidden with it (and could not be mounted over).
hide=()
for d in "${candidates[@]}"; do
  inside=0
  for e in "${candidates[@]}"; do
    case "$d" in "$e"/*) inside=1 ;; esac
  done
  [ $inside = 1 ] || hide+=("$d")
done

# In the namespace: hide, prove it, check the binary's own libnode, then run the check.
unshare --mount --propagation private bash -s -- "$tmp" "$node" "${hide[@]}" <<'INNER'
set -euo pipefail
tmp="$1"; node="$2"; shift 2
for d in "$@"; do
  mount -t tmpfs -o size=1m,mode=0755 parley-hidden "$d"
  if [ -n "$(ls -A "$d")" ]; then echo "install test: $d is not hidden" >&2; exit 1; fi
done
echo "hidden: $*"
runpath="$(readelf -d "$tmp/prefix/bin/parley" | grep -E 'RUNPATH|RPATH' || true)"
echo "$runpath"
case "$runpath" in *'[$ORIGIN/../lib]'*) ;; *)
  echo "install test: bin/parley's runpath is not \$ORIGIN/../lib: $runpath" >&2; exit 1 ;;
esac
libnode_used="$(ldd "$tmp/prefix/bin/parley" | grep libnode)"
echo "$libnode_used"
case "$libnode_used" in *"$tmp/prefix/bin/../lib/libnode.so.108"*) ;; *)
  echo "install test: libnode is not the installed one: $libnode_used" >&2; exit 1 ;;
esac
cd "$tmp"
PARLEY_BIN="$tmp/prefix/bin/parley" "$node" --test --test-reporter=spec "$tmp/client/install_check.js"
INNER

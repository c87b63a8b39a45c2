#!/usr/bin/env bash
# Build Beam's Prism runner for the installed apache-beam version from the Go module proxy,
# with the fixes in scripts/prism_patches/ applied.
#
# Beam downloads Prism from GitHub release assets, which offline machines (and CI
# here) cannot reach; the Go module proxy serves the same source.  This script
# copies that source (the sdks/v2 module's go/ tree) to a temporary folder, applies
# every scripts/prism_patches/*.patch in name order (each says which Beam bug it
# fixes and when it can go), runs the unit tests of the packages the patches touch,
# and builds the binary where Beam's own source build puts it,
#   ~/.apache_beam/cache/prism/bin/prism
# which run_configs/prism.yaml names as prism_location.  A stamp beside it
# (prism.version: Beam's version + a digest of the patches) makes reruns free;
# --force rebuilds.  A stock Prism (no stamp, or another digest) is rebuilt.
#
#   scripts/build_prism.sh [--force]          (uses `python` on PATH to read Beam's version)
set -euo pipefail
PYTHON=${PYTHON:-python}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
shopt -s nullglob
PATCHES=("$HERE"/prism_patches/*.patch)   # none (all fixed upstream): a stock build
shopt -u nullglob
BIN_DIR=${BEAM_DATAPREP_CACHE:-$HOME/.apache_beam/cache}/prism/bin
version=$("$PYTHON" -c 'import apache_beam; print(apache_beam.__version__)' 2>/dev/null)
digest=none
[[ ${#PATCHES[@]} -eq 0 ]] || digest=$(cat "${PATCHES[@]}" | sha256sum | cut -c1-12)
want="v$version+dataprep.$digest"
stamp="$BIN_DIR/prism.version"
if [[ "${1:-}" != "--force" && -x "$BIN_DIR/prism" && "$(cat "$stamp" 2>/dev/null)" == "$want" ]]; then
  echo "build_prism: prism $want already at $BIN_DIR/prism" >&2
  exit 0
fi
command -v go >/dev/null || { echo "build_prism: needs Go (https://go.dev/doc/install)" >&2; exit 1; }
module="github.com/apache/beam/sdks/v2@v$version"
work=$(mktemp -d "${TMPDIR:-/tmp}/build-prism.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
echo "build_prism: go mod download $module" >&2
# (go mod download reports a failure inside its JSON, as "Error")
json=$(cd "$work" && go mod download -json "$module" 2>&1) || true
src=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<< "$json")
if [[ -z "$src" || ! -d "$src" ]]; then
  reason=$(sed -n 's/^[[:space:]]*"Error": "\(.*\)",*$/\1/p' <<< "$json")
  echo "build_prism: go mod download $module failed: ${reason:-$json}" >&2
  exit 1
fi
mkdir "$work/src"
cp -r "$src/go" "$src/go.mod" "$src/go.sum" "$work/src/"
chmod -R u+w "$work/src"
packages=()
for patch in "${PATCHES[@]}"; do
  echo "build_prism: apply $(basename "$patch")" >&2
  (cd "$work/src" && git apply -p1 "$patch") || {
    echo "build_prism: $(basename "$patch") does not apply to Beam v$version: check whether Beam fixed the bug it names, then update or delete it" >&2
    exit 1
  }
  while read -r file; do
    packages+=("./$(dirname "$file")")
  done < <(sed -n 's#^+++ b/\(.*\.go\)$#\1#p' "$patch")
done
if [[ ${#packages[@]} -gt 0 ]]; then   # the packages the patches touch, each once
  mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)
  echo "build_prism: go test ${packages[*]}" >&2
  (cd "$work/src" && go test -count=1 "${packages[@]}" >&2)
fi
mkdir -p "$BIN_DIR"
echo "build_prism: go build ./go/cmd/prism" >&2
(cd "$work/src" && go build -o "$work/prism" ./go/cmd/prism)
mv -f "$work/prism" "$BIN_DIR/prism"
echo "$want" > "$stamp"
echo "build_prism: $BIN_DIR/prism ($want)" >&2

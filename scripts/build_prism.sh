#!/usr/bin/env bash
# Build Beam's Prism runner for the installed apache-beam version from the Go module proxy.
#
# Beam downloads Prism from GitHub release assets, which offline machines (and CI
# here) cannot reach; `go install` fetches the same source from the Go module
# proxy instead.  The binary goes where Beam's own source build puts it,
#   ~/.apache_beam/cache/prism/bin/prism
# which run_configs/prism.yaml names as prism_location.  A version stamp beside
# it makes reruns free; --force rebuilds.
#
#   scripts/build_prism.sh [--force]          (uses `python` on PATH to read Beam's version)
set -euo pipefail
PYTHON=${PYTHON:-python}
BIN_DIR=${BEAM_DATAPREP_CACHE:-$HOME/.apache_beam/cache}/prism/bin
version=$("$PYTHON" -c 'import apache_beam; print(apache_beam.__version__)' 2>/dev/null)
stamp="$BIN_DIR/prism.version"
if [[ "${1:-}" != "--force" && -x "$BIN_DIR/prism" && "$(cat "$stamp" 2>/dev/null)" == "v$version" ]]; then
  echo "build_prism: prism v$version already at $BIN_DIR/prism" >&2
  exit 0
fi
command -v go >/dev/null || { echo "build_prism: needs Go (https://go.dev/doc/install)" >&2; exit 1; }
mkdir -p "$BIN_DIR"
echo "build_prism: go install github.com/apache/beam/sdks/v2/go/cmd/prism@v$version" >&2
GOBIN="$BIN_DIR" go install "github.com/apache/beam/sdks/v2/go/cmd/prism@v$version"
echo "v$version" > "$stamp"
echo "build_prism: $BIN_DIR/prism" >&2

#!/usr/bin/env bash
# Idempotent setup shared by scripts/demo and scripts/test: a Python venv with AMOS's
# dependencies, a Go toolchain, and the lab's control-plane binaries (built once per
# pinned version, cached in ~/.cache/amos-lab).
set -euo pipefail
cd "$(dirname "$0")/.."

GO_FALLBACK_VERSION=1.24.6  # only used when no Go >= 1.24 is installed

python_bin() {
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      echo "$candidate"; return 0
    fi
  done
  echo "AMOS needs Python 3.11 or newer" >&2; return 1
}

if [ ! -x .venv/bin/python ]; then
  "$(python_bin)" -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test]'
  touch .venv/.installed
fi

go_ok() { command -v go >/dev/null && go version | grep -Eq 'go1\.(2[4-9]|[3-9][0-9])'; }

# The module proxy to fetch a Go toolchain from: the first http(s) entry of $GOPROXY, else of an
# installed (older) Go's `go env GOPROXY`. No proxy host is written here: it comes from the environment.
module_proxy() {
  local list="${GOPROXY:-}"
  if [ -z "$list" ] && command -v go >/dev/null; then list="$(go env GOPROXY)"; fi
  printf '%s\n' "$list" | tr ',|' '\n\n' | grep -E '^https?://' | head -n 1 | sed 's:/*$::' || true
}

go_arch() {
  case "$(uname -m)" in
    x86_64|amd64) echo amd64 ;;
    aarch64|arm64) echo arm64 ;;
    *) echo "no Go toolchain download for $(uname -m): install Go 1.24+ yourself" >&2; return 1 ;;
  esac
}

if ! go_ok; then
  # A Go module proxy serves whole toolchains (module golang.org/toolchain), so no other download site is needed.
  arch="$(go_arch)"
  toolchain="${AMOS_LAB_CACHE:-$HOME/.cache/amos-lab}/go-$GO_FALLBACK_VERSION-$arch"
  if [ ! -x "$toolchain/bin/go" ]; then
    proxy="$(module_proxy)"
    if [ -z "$proxy" ]; then
      echo "setup: no Go 1.24+ found, and no module proxy to fetch one from: set GOPROXY to your Go module proxy's" \
           "http(s) URL (see 'go help goproxy'), or install Go 1.24+" >&2
      exit 1
    fi
    module="golang.org/toolchain@v0.0.1-go$GO_FALLBACK_VERSION.linux-$arch"
    echo "installing Go $GO_FALLBACK_VERSION from the module proxy $proxy into $toolchain"
    tmp="$(mktemp -d)"
    curl -fsSL -o "$tmp/go.zip" "$proxy/${module/@//@v/}.zip"
    .venv/bin/python -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$tmp/go.zip" "$tmp"
    mkdir -p "$(dirname "$toolchain")"
    mv "$tmp/$module" "$toolchain"
    chmod -R u+x "$toolchain/bin" "$toolchain/pkg/tool"
    rm -rf "$tmp"
  fi
  export PATH="$toolchain/bin:$PATH"
fi

.venv/bin/python -m lab.build

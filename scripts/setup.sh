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
if ! go_ok; then
  # The Go module proxy serves whole toolchains, so no other download site is needed.
  toolchain="${AMOS_LAB_CACHE:-$HOME/.cache/amos-lab}/go-$GO_FALLBACK_VERSION"
  if [ ! -x "$toolchain/bin/go" ]; then
    echo "installing Go $GO_FALLBACK_VERSION from the module proxy into $toolchain"
    tmp="$(mktemp -d)"
    curl -fsSL -o "$tmp/go.zip" \
      "https://proxy.golang.org/golang.org/toolchain/@v/v0.0.1-go$GO_FALLBACK_VERSION.linux-amd64.zip"
    .venv/bin/python -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$tmp/go.zip" "$tmp"
    mkdir -p "$(dirname "$toolchain")"
    mv "$tmp/golang.org/toolchain@v0.0.1-go$GO_FALLBACK_VERSION.linux-amd64" "$toolchain"
    chmod -R u+x "$toolchain/bin" "$toolchain/pkg/tool"
    rm -rf "$tmp"
  fi
  export PATH="$toolchain/bin:$PATH"
fi

.venv/bin/python -m lab.build

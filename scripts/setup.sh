#!/usr/bin/env bash
# Set up Starloom on a fresh Debian/Ubuntu machine: Debian packages (offline plate solving,
# a virtual screen and the libraries Qt needs for the editor), then a virtual environment in
# .venv with Starloom and its editor and test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
APT_PACKAGES=(
  python3-venv                                 # the virtual environment below (system Python)
  astrometry.net astrometry-data-tycho2       # offline plate solving, Tycho-2 index files
  kstars-data                                  # stars.dat: V and B-V to V = 9, offline
  xvfb xauth libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0
  libxcb-xinerama0 libxcb-randr0 libxcb-render-util0 libxcb-image0 libegl1 libgl1 libfontconfig1
  libdbus-1-3 libxkbcommon0 libglib2.0-0 fonts-dejavu-core libx11-xcb1 libxcb-xfixes0
  libxcb-sync1 libxcb-xkb1                     # Qt (PySide6) under Xvfb or offscreen
)
if command -v apt-get >/dev/null; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
else
  echo "setup: not a Debian/Ubuntu machine: install astrometry.net and its Tycho-2 index files yourself" >&2
fi

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "Starloom needs Python 3.11+"'
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[editor,dev]'
echo "setup: done. Starloom is installed in $(pwd)/.venv"

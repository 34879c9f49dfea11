#!/usr/bin/env bash
# Set up hookstream on a fresh Debian/Ubuntu machine with Python 3.11:
# system packages (fluidsynth + a General MIDI soundfont, for rendering POP909;
# prometheus for promtool and docker-compose, which the tests use to check deploy/),
# a virtual environment in .venv, and the project with its test dependencies.
# Idempotent: a second run only checks. Usage: bash scripts/setup.sh [--renders]
# --renders also installs the soundfonts of the other renders used for training and
# evaluation (scripts/apt-packages-renders.txt: TimGM6mb, MuseScore General Lite,
# OPL-3; about 180 MB), see docs/evaluation.md.
set -euo pipefail
cd "$(dirname "$0")/.."

lists=(scripts/apt-packages.txt)
case "${1:-}" in
  "") ;;
  --renders) lists+=(scripts/apt-packages-renders.txt) ;;
  *) echo "usage: bash scripts/setup.sh [--renders]" >&2; exit 2 ;;
esac

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

need=()
while read -r pkg; do
  [ -n "$pkg" ] && ! dpkg -s "$pkg" >/dev/null 2>&1 && need+=("$pkg")
done < <(cat "${lists[@]}")
# venv support is a separate Debian package (python3.11-venv / python3-venv).
if ! "$PYTHON" -c "import ensurepip, venv" >/dev/null 2>&1; then
  need+=("$(basename "$PYTHON")-venv")
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${need[*]}"
  $SUDO apt-get update -qq
  # No recommends: they would add qsynth (a Qt GUI, for fluidsynth), docker.io (an engine,
  # for docker-compose) and prometheus-node-exporter, none of which the project uses.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
echo "setup: installing hookstream and its dependencies into .venv (torch is large: minutes)"
# requirements.lock pins every package (and pip) to the versions the tests passed
# with; refresh it with scripts/lock.sh.
.venv/bin/python -m pip install -q -c requirements.lock --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -c requirements.lock -e '.[dev]'
echo "setup: done. Run: .venv/bin/hookstream --help"

#!/usr/bin/env bash
# Refresh requirements.lock: the exact versions of every package in a working .venv
# (made by scripts/setup.sh, tests passing), minus the project itself and setuptools
# (a build tool: pip's isolated build of this project needs setuptools>=68, and a pin
# there would fight it). scripts/setup.sh, CI (.ci/run calls setup.sh) and
# deploy/Dockerfile install with `pip install -c requirements.lock`.
#   bash scripts/lock.sh [VENV]      (default .venv), then run the tests and commit
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
{
  echo "# Exact versions for pip install -c requirements.lock (constraints: a package listed here"
  echo "# is installed only if something requires it; platform-only wheels such as nvidia-* are"
  echo "# skipped where torch does not want them). Made by scripts/lock.sh from a working venv."
  "$VENV/bin/python" -m pip freeze --all --exclude-editable \
    | grep -v -i -E '^(#|-e |hookstream==|setuptools==)'
} > requirements.lock
echo "lock: $(grep -c '==' requirements.lock) packages in requirements.lock"

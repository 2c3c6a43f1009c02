#!/usr/bin/env bash
# `make lock`: rebuild requirements.lock, the exact versions every install uses (the Makefile's and environment.yml's
# `-c requirements.lock`). A fresh virtual environment in a temporary folder (never .venv) gets `pip install -e ".[dev]"`
# with only pyproject.toml's bounds, i.e. the newest releases they allow, and `pip freeze` of it (less prodlab) becomes
# the lock. pip's own configuration still applies (on the CI machines a global constraint file caps torch at the
# release on their disk). Then run `make test`, which reinstalls .venv from the new lock, and commit the lock if it passes.
#
#   bash .ci/lock.sh                 a fresh venv (what `make lock` runs; PYTHON picks the interpreter, default python3)
#   bash .ci/lock.sh --freeze VENV   freeze an existing venv instead, e.g. .venv after a `make test` that passed
#   LOCK=path bash .ci/lock.sh ...   write elsewhere than requirements.lock
set -euo pipefail
cd "$(dirname "$0")/.."
lock=${LOCK:-requirements.lock}
python=${PYTHON:-python3}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ "${1:-}" = "--freeze" ]; then
  venv=${2:?usage: bash .ci/lock.sh --freeze VENV}
  how="Frozen from the existing $venv (as \`make setup\` installs it: pip install -e \".[dev]\")."
else
  venv=$tmp/venv
  echo "Installing the newest releases that pyproject.toml allows into a fresh venv ($("$python" --version))"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -e ".[dev]"
  how="Made by \`make lock\`: a fresh venv, pip install -e \".[dev]\" with pyproject.toml's bounds only (the newest releases)."
fi

"$venv/bin/python" -m pip freeze --all --exclude-editable >"$tmp/freeze"
pins=$(grep -v -E '^(#|-e |prodlab==)' "$tmp/freeze" | LC_ALL=C sort -f)
platform=$("$venv/bin/python" -c 'import platform; print(f"Python {platform.python_version()} on {platform.system()} {platform.machine()}")')

{
  echo "# requirements.lock: a pip constraints file, the exact version of every package (bar prodlab) of an environment"
  echo "# that passed the tests. The Makefile installs with it (pip install -c requirements.lock -e \".[dev]\"), and so"
  echo "# does environment.yml (its pip list starts with -c requirements.lock)."
  echo "# $how"
  echo "# Made with $platform, $(date -u +%Y-%m-%d). Other Pythons may lack some pins' wheels: run \`make lock\` there."
  echo "# To refresh: \`make lock\`, then \`make test\`; commit this file if the tests pass. Do not edit by hand."
  echo "# No hashes: any --hash puts pip in hash-checking mode, which refuses the editable install of prodlab (no single"
  echo "# file to hash) and every package not pinned with a hash; and a wheel's hash holds for one platform and index only."
  echo "$pins"
} >"$lock.tmp"
mv "$lock.tmp" "$lock"
echo "Wrote $lock: $(echo "$pins" | wc -l) pins ($platform)"

#!/usr/bin/env bash
# Compiled == pure: compiles the modules scripts/build_compiled.sh lists (mypyc) in a COPY of the tree and runs
# the unit tests there, so the tests that prove the pure modules also prove the extensions the image ships.
# The checkout never gets an extension; the copy is removed at the end, also on failure. Run by
# scripts/test.sh (measured 89 s on the 2-core machine at load 2: 30 s of gcc, 58 s of tests).
#
#   scripts/test_compiled.sh [PYTEST ARGS]     PYTHON (default: .venv/bin/python) needs the `test` extra
#
# Needs git (the copy is the files git tracks or would track, as they are in the working tree), gcc and the
# Python headers (scripts/ensure_tools.sh installs them on Debian).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Absolute, but not resolved: a virtualenv's python is a symlink to an interpreter without its packages.
PYTHON=$(realpath --no-symlinks "${PYTHON:-.venv/bin/python}")

# Every unit test but the deployment checks' (tools of their own, nothing compiled): the compiled modules'
# own tests and everything that drives them (agents, the runtime, the bounds, the generator's workloads).
TESTS=(tests/unit --ignore=tests/unit/test_deploy)

copy=$(mktemp -d "${TMPDIR:-/tmp}/streamcdp-compiled.XXXXXX")
trap 'rm -rf "$copy"' EXIT
# Tracked and untracked-but-not-ignored files, minus those deleted in the working tree.
git ls-files -z --cached --others --exclude-standard \
  | tar -c --null -T - --ignore-failed-read 2>/dev/null \
  | tar -x -C "$copy"

cd "$copy"
started=$SECONDS
PYTHON="$PYTHON" scripts/build_compiled.sh >build.log 2>&1 || { cat build.log; exit 1; }
echo "test_compiled: compiled $(scripts/build_compiled.sh list | wc -l) modules in $((SECONDS - started)) s"
# The tests below must import the extensions, not the source: fail if any compiled module does not.
# shellcheck disable=SC2046  # one argument per module path
"$PYTHON" -m streams.compiled check --require-compiled --modules $(scripts/build_compiled.sh list)
"$PYTHON" -m pytest -q -p no:cacheprovider "${TESTS[@]}" "$@"
echo "test_compiled: built and tested in $((SECONDS - started)) s"

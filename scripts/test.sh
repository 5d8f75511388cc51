#!/usr/bin/env bash
# The test command: set-up, then unit tests and integration tests against a real local Kafka broker
# that tests/conftest.py starts on a free port and stops by pid, then (without arguments) the unit tests
# again against the compiled modules. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The deployment checks' tools (scripts/ensure_tools.sh: apt, the Go module proxy, PyPI into a virtualenv of
# their own) need nothing of the project's set-up, so they install in the background, in a process group of
# their own, while the project's virtualenv, the Kafka jars, lint and types go ahead; the tests that use
# them run ensure_tools.sh again, which then finds everything in place. On a fresh clone this takes the
# tools' minutes out of the pytest run instead of adding them to it.
mkdir -p .cache
tools_log=.cache/ensure_tools.log
setsid bash scripts/ensure_tools.sh >"$tools_log" 2>&1 </dev/null &
tools_pid=$!
stop_tools() {
  if kill -0 "$tools_pid" 2>/dev/null; then
    kill -- -"$tools_pid" 2>/dev/null || true
  fi
}
trap stop_tools EXIT

bash scripts/bootstrap.sh
# Style and types first: a violation fails the run before the (slower) tests start.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy

tools_status=0
wait "$tools_pid" || tools_status=$?
cat "$tools_log"
if [ "$tools_status" -ne 0 ]; then
  echo "test.sh: scripts/ensure_tools.sh failed (exit $tools_status)" >&2
  exit "$tools_status"
fi

set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests" >&2
  exit 1
fi
# Compiled == pure: the full run (no pytest arguments, as CI) also runs the unit tests against the mypyc
# extensions the image ships, built in a copy of the tree (scripts/test_compiled.sh; ~1.5 min here).
if [ "$status" -eq 0 ] && [ "$#" -eq 0 ]; then
  PYTHON=.venv/bin/python bash scripts/test_compiled.sh || status=$?
fi
exit "$status"

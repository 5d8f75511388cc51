#!/usr/bin/env bash
# The test command: set-up, then unit tests and integration tests against a real local Kafka broker
# that tests/conftest.py starts on a free port and stops by pid. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
# Style and types first: a violation fails the run before the (slower) tests start.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests" >&2
  exit 1
fi
exit "$status"

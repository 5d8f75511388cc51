#!/usr/bin/env bash
# Set up everything streamcdp needs on a fresh machine with Python 3.11, Java 17+ and Maven:
# the virtualenv with the project installed, and the Apache Kafka broker jars from Maven Central.
# Idempotent and quick when nothing changed. Sourced by scripts/test.sh and scripts/demo.sh.
#
# The pure stages run from their source unless STREAMCDP_COMPILE=1: then they are compiled with mypyc
# (scripts/build_compiled.sh; needs gcc and the Python headers), or left pure when that fails. Without it,
# extensions of an earlier STREAMCDP_COMPILE=1 are removed, so tests and the demo run the source.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${STREAMCDP_PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PYTHON="$candidate"; break
    fi
  done
fi
if [ -z "$PYTHON" ]; then
  echo "bootstrap: Python 3.11 is required (set STREAMCDP_PYTHON to its path)" >&2; exit 2
fi
for tool in java mvn; do
  command -v "$tool" >/dev/null 2>&1 || { echo "bootstrap: '$tool' is required (Java 17+ and Maven run the local Kafka broker)" >&2; exit 2; }
done

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.streamcdp-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing streamcdp and its dependencies into .venv"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test]'
  echo "$want" > "$stamp"
fi
if [ "${STREAMCDP_COMPILE:-0}" = 1 ]; then
  # Rebuilt only when a compiled module's source, the list of modules or Python changed since the last build.
  # shellcheck disable=SC2046  # one argument per module path
  if ! .venv/bin/python -m streams.compiled check --require-compiled --modules $(scripts/build_compiled.sh list) \
    >/dev/null 2>&1; then
    echo "bootstrap: compiling the pure stages with mypyc (scripts/build_compiled.sh)"
    PYTHON=.venv/bin/python scripts/build_compiled.sh >.venv/build_compiled.log 2>&1 \
      || echo "bootstrap: compiling failed (gcc or the Python headers missing? .venv/build_compiled.log); running the pure modules" >&2
  fi
  .venv/bin/python -m streams.compiled check
elif [ -n "$(PYTHON=.venv/bin/python scripts/build_compiled.sh clean)" ]; then
  echo "bootstrap: removed the compiled extensions of an earlier build (STREAMCDP_COMPILE=1 keeps them)"
fi
.venv/bin/streamcdp kafka fetch

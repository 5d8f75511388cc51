#!/usr/bin/env bash
# Compiles the pure per-event modules with mypyc, in place: each listed module gets a C extension
# (module.cpython-*.so) next to its .py, which Python then imports instead of the source. The source does not
# change, and removing the extensions (`scripts/build_compiled.sh clean`) brings back the pure modules. Measured
# and explained in bench/README.md, "Compiling the pure stages with mypyc (issues 11, 15)".
#
#   scripts/build_compiled.sh          compile MODULES below (about a minute of gcc)
#   scripts/build_compiled.sh all      compile MODULES and SLOWER (to measure them again)
#   scripts/build_compiled.sh clean    remove every extension and the build directory
#   scripts/build_compiled.sh list     print the modules it compiles
#
# PYTHON (default: .venv/bin/python) must have mypy (the `test` extra), which ships mypyc; gcc and the Python
# headers must be on the machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-.venv/bin/python}

# The per-event path of the profile stage (issue 11) and of the worker's other pure stages (issue 15). Not
# compiled: the schema modules that define msgspec Structs (compiled modules read their fields just as fast
# through msgspec's own C getters; and mypyc would drop their class keywords such as frozen=True), the I/O
# shells (agents/*, streams/*): agents/profiles.py's CommandHandler is subclassed by the uncompiled
# agents/pipeline.py, and a compiled class takes no interpreted subclass.
MODULES=(
  core/profile_stage.py
  core/identity.py
  schemas/validation.py
  core/profile/affinity.py
  core/profile/applied.py
  core/profile/apply.py
  core/profile/bounded.py
  core/profile/document.py
  core/profile/identify.py
  core/profile/merge.py
  core/profile/orders.py
  core/profile/policy.py
)
# Measured SLOWER compiled than pure (bench/README.md): the trigger stage and the rule closures, whose time
# goes to attribute reads of msgspec Structs (the interpreter specialises them; mypyc's generic getattr does
# not) and to calls of nested functions. `build all` compiles them too, to measure again.
SLOWER=(
  core/triggers/engine.py
  core/triggers/rules.py
  core/triggers/guards.py
  core/triggers/payload.py
  core/segment_eval.py
  core/rules/analysis.py
  core/rules/compiler.py
  core/rules/context.py
  core/rules/definitions.py
  core/rules/functions.py
  core/rules/nodes.py
  core/rules/parser.py
  core/rules/tokens.py
  core/scoring.py
)

clean() {
  # The extensions sit next to the modules; mypyc's shared runtime (<hash>__mypyc.*.so) at the top.
  find . -path ./.venv -prune -o -name '*.cpython-*.so' -print | xargs -r rm -f
  rm -rf build
}

case "${1:-build}" in
  build)
    clean >/dev/null
    "$PYTHON" -m mypyc "${MODULES[@]}"
    ;;
  all)
    clean >/dev/null
    "$PYTHON" -m mypyc "${MODULES[@]}" "${SLOWER[@]}"
    ;;
  clean) clean ;;
  list) printf '%s\n' "${MODULES[@]}" ;;
  *)
    echo "usage: $0 [build|all|clean|list]" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# Compiles the pure per-event modules with mypyc, in place: each listed module gets a C extension
# (module.cpython-*.so) next to its .py, which Python then imports instead of the source. The source does not
# change, and removing the extensions (`scripts/build_compiled.sh clean`) brings back the pure modules. Measured
# and explained in bench/README.md, "Compiling the pure stages with mypyc (issues 11, 15)".
#
# A build writes streamcdp-compiled.json (streams/compiled.py): the sha256 of each compiled module's source and
# the Python version. The worker checks it at start and refuses to run an extension older than its source;
# after editing a compiled module, build again or clean. A failed build cleans up, leaving the pure modules.
#
#   scripts/build_compiled.sh          compile MODULES below (~30-40 s of gcc on a 2-core machine)
#   scripts/build_compiled.sh all      compile MODULES and SLOWER (to measure them again)
#   scripts/build_compiled.sh clean    remove every extension, the stamp and the build directory
#   scripts/build_compiled.sh list     print the modules it compiles
#
# PYTHON (default: .venv/bin/python) must have the project's dependencies and mypy (the `test` extra), which
# ships mypyc; gcc and the Python headers must be on the machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-.venv/bin/python}

# The per-event path of the profile stage (issue 11) and of the worker's other pure stages (issue 15), and
# the runtime's pure event-time merge (streams/alignment.py: 0.1-0.2 µs less per record, branch runtime15).
# Not compiled: the schema modules that define msgspec Structs (compiled modules read their fields just as
# fast through msgspec's own C getters; and mypyc would drop their class keywords such as frozen=True), the
# I/O shells (agents/*, the rest of streams/*): agents/profiles.py's CommandHandler is subclassed by the
# uncompiled agents/pipeline.py, and a compiled class takes no interpreted subclass.
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
  streams/alignment.py
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
  # The extensions sit next to the modules in the packages; mypyc's shared runtime (<hash>__mypyc.*.so) and
  # the stamp at the top. Only those: .venv and .cache hold other programs' extensions.
  "$PYTHON" -m streams.compiled clean
  rm -rf build
}

compile() {
  clean >/dev/null
  if ! "$PYTHON" -m mypyc "$@"; then
    clean >/dev/null
    echo "build_compiled: mypyc failed; extensions removed, the modules run from their source" >&2
    return 1
  fi
  "$PYTHON" -m streams.compiled stamp "$@"
  # mypyc's intermediate C files and objects; the extensions were copied next to the modules.
  rm -rf build
}

case "${1:-build}" in
  build) compile "${MODULES[@]}" ;;
  all) compile "${MODULES[@]}" "${SLOWER[@]}" ;;
  clean) clean ;;
  list) printf '%s\n' "${MODULES[@]}" ;;
  *)
    echo "usage: $0 [build|all|clean|list]" >&2
    exit 2
    ;;
esac

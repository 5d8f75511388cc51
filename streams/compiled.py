"""Which pure modules run compiled (mypyc extensions from ``scripts/build_compiled.sh``), and whether every
extension was built from the source next to it.

Python imports ``core/identity.cpython-311-*.so`` instead of ``core/identity.py`` whenever both exist, so an
extension left over from before an edit would silently run the old code. The build therefore writes a stamp,
``streamcdp-compiled.json`` at the root the packages sit in (next to mypyc's shared ``<hash>__mypyc`` library):
the sha256 of each compiled module's source and the Python version. The worker compares it with the tree at
start-up and refuses to start on any difference. mypyc compiles the listed modules as one group whose code
lives in the shared library and calls itself directly, so one changed module makes the whole build stale, and
a stamped module whose extension was removed is a mismatch too (its old code still runs when called from the
others).

    python -m streams.compiled stamp core/identity.py ...   write the stamp (scripts/build_compiled.sh)
    python -m streams.compiled check [--require-compiled]    print the verdict; exit 1 when stale (or,
                                                             with --require-compiled, not compiled)
    python -m streams.compiled clean                         remove every extension and the stamp
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.machinery
import json
import logging
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import StreamcdpError

log = logging.getLogger(__name__)

STAMP_NAME = "streamcdp-compiled.json"
# pyproject.toml's packages: the directories where an extension could shadow a module.
PACKAGES = ("agents", "core", "offline", "schemas", "streams")
# The root the packages sit in: the checkout, or site-packages in the image.
ROOT = Path(__file__).resolve().parent.parent
FIX = "rebuild with scripts/build_compiled.sh, or run the source with scripts/build_compiled.sh clean"


class StaleCompiledModules(StreamcdpError):
    """A compiled extension does not match the source next to it; the message names the module and the fix."""


@dataclass(frozen=True)
class Stamp:
    """What one build compiled: each module's source path (relative to the root) -> sha256 of the source."""

    python: str
    modules: Mapping[str, str]


@dataclass(frozen=True)
class Verdict:
    """``pure`` (no extension), ``compiled`` (every extension in step with its source) or ``stale``."""

    state: str
    modules: tuple[str, ...]
    problems: tuple[str, ...] = ()

    def message(self) -> str:
        if self.state == "pure":
            return "no compiled extension: every module runs from its source"
        if self.state == "compiled":
            return f"running {len(self.modules)} module(s) compiled (mypyc): " + ", ".join(self.modules)
        return "compiled extensions out of step with the source: " + "; ".join(self.problems) + f". Fix: {FIX}"


def python_version() -> str:
    return ".".join(str(part) for part in sys.version_info[:3])


def abi_of(version: str) -> str:
    # An extension is built against one minor version's C API (the `cpython-311` of its file name); patch
    # releases keep it, so 3.11.7 and 3.11.14 share extensions.
    return ".".join(version.split(".")[:2])


def source_digest(source: bytes) -> str:
    return hashlib.sha256(source).hexdigest()


def judge(stamp: Stamp | None, extensions: Iterable[str], digests: Mapping[str, str], python: str) -> Verdict:
    """The verdict on a tree: ``extensions`` are the source paths an extension shadows, ``digests`` the
    sha256 of each source present, ``python`` this interpreter's version. Pure: no file is read."""
    shadowed = tuple(sorted(extensions))
    if not shadowed:
        return Verdict("pure", ())
    if stamp is None:
        problem = f"{', '.join(shadowed)}: extension(s) without a {STAMP_NAME} (a partial or an older build)"
        return Verdict("stale", shadowed, (problem,))
    problems = []
    if abi_of(stamp.python) != abi_of(python):
        problems.append(f"built for Python {stamp.python}, this is Python {python}")
    for module in shadowed:
        if module not in stamp.modules:
            problems.append(f"{module}: extension not in the stamp (left from another build)")
        elif module not in digests:
            problems.append(f"{module}: extension whose source is gone")
        elif digests[module] != stamp.modules[module]:
            problems.append(f"{module}: source changed since its extension was built")
    problems.extend(
        f"{module}: compiled in this build but its extension is missing"
        for module in stamp.modules
        if module not in shadowed
    )
    return Verdict("stale" if problems else "compiled", shadowed, tuple(problems))


# --- the tree on disk ---------------------------------------------------------------------------------


def extension_files(root: Path) -> dict[str, Path]:
    """Source path (``core/identity.py``) -> the extension this Python imports instead, for every such pair."""
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.so")):
            suffix = next((suffix for suffix in suffixes if path.name.endswith(suffix)), None)
            # `identity.cpython-312-….so` ends in `.so` too, but no 3.11 import of `identity` reads it.
            if suffix is not None and "." not in path.name.removesuffix(suffix):
                found[path.relative_to(root).as_posix().removesuffix(suffix) + ".py"] = path
    return found


def read_stamp(root: Path) -> Stamp | None:
    path = root / STAMP_NAME
    if not path.exists():
        return None
    document = json.loads(path.read_text())
    return Stamp(python=document["python"], modules=document["modules"])


def judge_tree(root: Path = ROOT) -> Verdict:
    stamp = read_stamp(root)
    extensions = extension_files(root)
    wanted = set(extensions) | set(stamp.modules if stamp else ())
    digests = {module: source_digest((root / module).read_bytes()) for module in wanted if (root / module).exists()}
    return judge(stamp, extensions, digests, python_version())


def check_compiled_modules(root: Path = ROOT) -> Verdict:
    """Log which modules run compiled; raise ``StaleCompiledModules`` when an extension is out of step with
    its source. Called once at worker start."""
    verdict = judge_tree(root)
    if verdict.state == "stale":
        msg = "refusing to start: " + verdict.message()
        raise StaleCompiledModules(msg)
    log.info(verdict.message())
    return verdict


def write_stamp(root: Path, sources: Iterable[str]) -> Path:
    modules = {source: source_digest((root / source).read_bytes()) for source in sorted(sources)}
    path = root / STAMP_NAME
    path.write_text(json.dumps({"python": python_version(), "modules": modules}, indent=2) + "\n")
    return path


def remove_extensions(root: Path) -> list[Path]:
    """Remove every shared object in the packages (of any Python version), mypyc's shared library at the
    root, and the stamp."""
    doomed = [path for package in PACKAGES for path in (root / package).rglob("*.so")]
    doomed += [*root.glob("*__mypyc.*.so"), root / STAMP_NAME]
    removed = [path for path in doomed if path.exists()]
    for path in removed:
        path.unlink()
    return removed


def imported_from_extensions(modules: Iterable[str]) -> list[str]:
    """The modules (source paths) that do NOT import from their extension: proof that a run is compiled."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    missing = []
    for source in modules:
        module = importlib.import_module(source.removesuffix(".py").replace("/", "."))
        if not str(module.__file__).endswith(suffixes):
            missing.append(source)
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.compiled", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    stamp = sub.add_parser("stamp", help="write the stamp of the modules just compiled")
    stamp.add_argument("sources", nargs="+", help="source paths relative to the root, e.g. core/identity.py")
    check = sub.add_parser("check", help="print the verdict; exit 1 when stale")
    check.add_argument(
        "--require-compiled",
        action="store_true",
        help="exit 1 unless compiled and in step, and each compiled module imports from its extension",
    )
    check.add_argument(
        "--modules", nargs="+", default=None, help="with --require-compiled: exactly these source paths compiled"
    )
    sub.add_parser("clean", help="remove every extension and the stamp")
    args = parser.parse_args(argv)
    if args.command == "stamp":
        print(f"wrote {write_stamp(ROOT, args.sources)}")
        return 0
    if args.command == "clean":
        for path in remove_extensions(ROOT):
            print(f"removed {path.relative_to(ROOT)}")
        return 0
    verdict = judge_tree()
    print(verdict.message())
    if verdict.state == "stale":
        return 1
    if args.require_compiled:
        if verdict.state != "compiled":
            return 1
        if args.modules is not None and sorted(args.modules) != sorted(verdict.modules):
            print("compiled modules differ from: " + ", ".join(sorted(args.modules)))
            return 1
        missing = imported_from_extensions(verdict.modules)
        if missing:
            print("imported from the source, not the extension: " + ", ".join(missing))
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The pure core stays pure: `core/` and `schemas/` import no I/O framework (faust, kafka, rocksdict, prometheus)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = ("faust", "mode", "aiokafka", "kafka", "rocksdict", "prometheus_client", "streams", "agents")
PURE_FILES = sorted([*REPO.joinpath("core").rglob("*.py"), *REPO.joinpath("schemas").rglob("*.py")])


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_there_is_pure_code_to_check():
    assert len(PURE_FILES) >= 5


@pytest.mark.parametrize("path", PURE_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_pure_modules_import_no_io_framework(path: Path):
    bad = imported_roots(path) & set(FORBIDDEN)
    assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


# Package order: a module imports only from its own package and the ones to its left. ``offline`` (the
# workload generator and the model trainer) may use the pure packages; only the CLI in ``streams`` runs it.
PACKAGE_ORDER = ("schemas", "core", "agents", "streams")
ORDERED_FILES = sorted(path for package in PACKAGE_ORDER for path in REPO.joinpath(package).rglob("*.py"))


def order_violations(relative: Path, roots: set[str]) -> set[str]:
    """The packages ``relative`` (a path inside the repo) imports against the order."""
    allowed = set(PACKAGE_ORDER[: PACKAGE_ORDER.index(relative.parts[0]) + 1])
    later = (roots & {*PACKAGE_ORDER, "offline"}) - allowed
    if relative.parts[0] == "streams":
        later.discard("offline")  # the CLI runs the tools
    return later


@pytest.mark.parametrize("path", ORDERED_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_modules_import_only_packages_to_their_left(path: Path):
    relative = path.relative_to(REPO)
    later = order_violations(relative, imported_roots(path))
    assert not later, f"{relative} imports {sorted(later)}"


def test_a_reversed_import_is_caught(tmp_path: Path):
    """The check itself: a schema module importing the core, or a core module importing an agent (also
    lazily, inside a function), is a violation."""
    schema = tmp_path / "schemas" / "reversed.py"
    schema.parent.mkdir()
    schema.write_text("from core.profile.apply import apply_event\n")
    assert order_violations(Path("schemas/reversed.py"), imported_roots(schema)) == {"core"}
    core = tmp_path / "core" / "lazy.py"
    core.parent.mkdir()
    core.write_text("def f():\n    import agents.tables\n    from offline import generator\n")
    assert order_violations(Path("core/lazy.py"), imported_roots(core)) == {"agents", "offline"}
    assert not order_violations(Path("streams/cli.py"), {"offline", "agents", "core", "schemas"})


def test_the_stream_loop_imports_no_agent_stage():
    stage_modules = {"agents.ingest", "agents.profiles", "agents.clock", "agents.pipeline"}
    for loop_module in ("streams/runtime.py", "streams/checkpoint.py", "streams/recovery.py"):
        tree = ast.parse(REPO.joinpath(loop_module).read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not imported & stage_modules, f"{loop_module} imports {sorted(imported & stage_modules)}"


@pytest.mark.parametrize("path", sorted(REPO.joinpath("agents").rglob("*.py")), ids=lambda p: p.name)
def test_agents_import_no_kafka_store_or_metrics_client(path: Path):
    """The agents get the store, the outbox and the tally passed in; the runtime owns the I/O."""
    bad = imported_roots(path) & {"aiokafka", "kafka", "rocksdict", "prometheus_client"}
    assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"

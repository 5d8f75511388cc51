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

"""Test modules have unique file names: pytest imports them by basename (no ``__init__.py`` in tests/), so a
second ``test_x.py`` anywhere under tests/ stops the whole collection ("import file mismatch")."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_two_test_modules_share_a_file_name() -> None:
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []

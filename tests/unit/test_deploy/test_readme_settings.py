"""The README's settings table is exactly what `streamcdp settings` prints (one source: Settings)."""

from __future__ import annotations

import contextlib
import io

from deploy_tools import REPO

from streams.cli import main


def test_readme_settings_table_is_generated() -> None:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["settings"]) == 0
    table = printed.getvalue().strip()
    assert table.count("\n") > 20
    assert table in (REPO / "README.md").read_text(), "regenerate the README table with `streamcdp settings`"

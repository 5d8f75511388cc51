"""``streamcdp segments check``: OK with counts, or every problem with file and line and exit 2."""

from __future__ import annotations

from core.rules.definitions import DEFAULT_DEFINITIONS
from streams.cli import main


def test_check_default_file_prints_ok_with_counts(capsys) -> None:
    assert main(["segments", "check", str(DEFAULT_DEFINITIONS)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK ") and "independent segment(s)" in out and "waterfall group(s)" in out


def test_check_bad_file_lists_problems_and_exits_2(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "segments:\n  - name: x\n    when: ordrs > 1\n  - name: x\n    when: 'true'\n"
        "groups:\n  - name: g\n    segments: []\n  - {name: h, segments: [{name: y, when: 'bogus()'}]}\n"
    )
    assert main(["segments", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3:11: segment 'x': unknown field 'ordrs'" in err
    assert f"{bad}:4:11: duplicate name 'x'" in err
    assert "group 'g' has no segments" in err
    assert "unknown function 'bogus'" in err


def test_check_unreadable_and_invalid_yaml(tmp_path, capsys) -> None:
    assert main(["segments", "check", str(tmp_path / "missing.yaml")]) == 2
    broken = tmp_path / "broken.yaml"
    broken.write_text("segments: [\n  - name: x\n")
    assert main(["segments", "check", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err and "not valid YAML" in err


def test_eval_reports_memberships(tmp_path, capsys) -> None:
    profile = tmp_path / "p.json"
    profile.write_text('{"orders": 1, "last_order_at": 1000000, "country": "FR"}')
    assert main(["segments", "eval", "--profile", str(profile), "--now", "1000100"]) == 0
    out = capsys.readouterr().out
    assert "region_france" in out and "tier_one_time" in out

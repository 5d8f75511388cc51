"""The compiled-modules stamp (streams/compiled.py): a worker runs compiled only when every extension was built
from the source next to it, runs the source when there is no extension, and refuses to start otherwise."""

from __future__ import annotations

import importlib.machinery
import logging
from pathlib import Path

import pytest

from streams.compiled import (
    STAMP_NAME,
    StaleCompiledModules,
    Stamp,
    check_compiled_modules,
    judge,
    python_version,
    remove_extensions,
    source_digest,
    write_stamp,
)

IDENTITY = "core/identity.py"
STAGE = "core/profile_stage.py"
DIGESTS = {IDENTITY: source_digest(b"identity v1"), STAGE: source_digest(b"stage v1")}
BUILD = Stamp(python="3.11.7", modules=dict(DIGESTS))
EXTENSION = importlib.machinery.EXTENSION_SUFFIXES[0]  # e.g. .cpython-311-x86_64-linux-gnu.so


# --- the verdict (pure) -------------------------------------------------------------------------------


def test_no_extension_is_a_pure_run_with_or_without_a_stamp() -> None:
    for stamp in (None, BUILD):
        verdict = judge(stamp, [], DIGESTS, "3.11.7")
        assert (verdict.state, verdict.modules, verdict.problems) == ("pure", (), ())
        assert "from its source" in verdict.message()


def test_every_extension_in_step_is_compiled_and_named() -> None:
    verdict = judge(BUILD, [STAGE, IDENTITY], DIGESTS, "3.11.7")
    assert (verdict.state, verdict.modules, verdict.problems) == ("compiled", (IDENTITY, STAGE), ())
    assert verdict.message() == f"running 2 module(s) compiled (mypyc): {IDENTITY}, {STAGE}"


def test_a_patch_release_keeps_the_extensions() -> None:
    assert judge(BUILD, [STAGE, IDENTITY], DIGESTS, "3.11.14").state == "compiled"


@pytest.mark.parametrize(
    ("stamp", "extensions", "digests", "python", "problem"),
    [
        (BUILD, [STAGE, IDENTITY], {**DIGESTS, IDENTITY: source_digest(b"identity v2")}, "3.11.7",
         f"{IDENTITY}: source changed since its extension was built"),
        (None, [IDENTITY], DIGESTS, "3.11.7", f"{IDENTITY}: extension(s) without a {STAMP_NAME}"),
        (BUILD, [STAGE, IDENTITY], DIGESTS, "3.12.1", "built for Python 3.11.7, this is Python 3.12.1"),
        (BUILD, [STAGE, IDENTITY, "core/scoring.py"], {**DIGESTS, "core/scoring.py": source_digest(b"s")}, "3.11.7",
         "core/scoring.py: extension not in the stamp"),
        (BUILD, [STAGE, IDENTITY], {STAGE: DIGESTS[STAGE]}, "3.11.7", f"{IDENTITY}: extension whose source is gone"),
        # mypyc's group calls itself inside the shared library: a removed extension's old code still runs.
        (BUILD, [STAGE], DIGESTS, "3.11.7", f"{IDENTITY}: compiled in this build but its extension is missing"),
    ],
    ids=["source-edited", "no-stamp", "other-python", "extra-extension", "source-deleted", "extension-removed"],
)  # fmt: skip
def test_stale(stamp, extensions, digests, python, problem) -> None:
    verdict = judge(stamp, extensions, digests, python)
    assert verdict.state == "stale"
    assert any(found.startswith(problem) for found in verdict.problems), verdict.problems
    assert problem in verdict.message() and "scripts/build_compiled.sh clean" in verdict.message()


# --- the tree on disk ---------------------------------------------------------------------------------


def build_tree(root: Path) -> None:
    """A checkout as scripts/build_compiled.sh leaves it: sources, their extensions, the shared library, the stamp."""
    (root / "core").mkdir()
    for source, text in ((IDENTITY, "identity v1"), (STAGE, "stage v1")):
        (root / source).write_text(text)
        (root / source.removesuffix(".py")).with_name(Path(source).stem + EXTENSION).write_bytes(b"\x7fELF")
    (root / f"0123abcd__mypyc{EXTENSION}").write_bytes(b"\x7fELF")
    write_stamp(root, [IDENTITY, STAGE])


def test_worker_start_logs_the_compiled_modules(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    build_tree(tmp_path)
    with caplog.at_level(logging.INFO, logger="streams.compiled"):
        verdict = check_compiled_modules(tmp_path)
    assert verdict.state == "compiled" and verdict.modules == (IDENTITY, STAGE)
    assert f"compiled (mypyc): {IDENTITY}, {STAGE}" in caplog.text
    assert python_version().startswith("3.11")


def test_worker_refuses_to_start_after_an_edit(tmp_path: Path) -> None:
    build_tree(tmp_path)
    (tmp_path / STAGE).write_text("stage v2")
    with pytest.raises(StaleCompiledModules, match=rf"refusing to start: .*{STAGE}: source changed"):
        check_compiled_modules(tmp_path)


def test_clean_brings_back_the_pure_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    build_tree(tmp_path)
    (tmp_path / STAGE).write_text("stage v2")
    other_python = tmp_path / "core" / "identity.cpython-312-x86_64-linux-gnu.so"
    other_python.write_bytes(b"\x7fELF")
    removed = remove_extensions(tmp_path)
    assert len(removed) == 5 and other_python in removed and (tmp_path / STAMP_NAME) in removed
    assert sorted(path.name for path in tmp_path.rglob("*") if path.is_file()) == ["identity.py", "profile_stage.py"]
    with caplog.at_level(logging.INFO, logger="streams.compiled"):
        assert check_compiled_modules(tmp_path).state == "pure"
    assert "every module runs from its source" in caplog.text


def test_an_extension_of_another_python_shadows_nothing(tmp_path: Path) -> None:
    (tmp_path / "core").mkdir()
    (tmp_path / IDENTITY).write_text("identity v1")
    (tmp_path / "core" / "identity.cpython-312-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    assert check_compiled_modules(tmp_path).state == "pure"

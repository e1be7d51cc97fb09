"""What the tests share: the shared data sets beside the repository, this build's `carecast`
binary (the command line the package must agree with), and a registry with models trained once."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
SUPPORT = SHARED / "data" / "support2.csv"
XGBOOST = SHARED / "fixtures" / "xgboost" / "support2_hospdead.json"


def carecast_bin() -> str:
    """`CARECAST_BIN`, else the debug build `cargo test` made."""
    path = os.environ.get("CARECAST_BIN", str(ROOT / "target" / "debug" / "carecast"))
    if not os.path.exists(path):
        pytest.fail(f"{path}: build the command line first (cargo build -p carecast-cli) or set CARECAST_BIN")
    return path


def cli(*args: str, cwd: Path) -> str:
    """Runs `carecast`; fails the test with its output if it fails."""
    done = subprocess.run([carecast_bin(), *args], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"carecast {args} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> Path:
    """A registry holding the GBM trained here and the shared XGBoost fixture imported with the
    command line (so both halves read the same packages)."""
    import carecast

    root = tmp_path_factory.mktemp("registry")
    registry = root / "registry"
    carecast.train("support2_hospdead", SUPPORT, registry=registry, model="gbm")
    cli("import", "--file", str(XGBOOST), "--format", "xgboost", "--task", "support2_hospdead",
        "--data", str(SUPPORT), "--name", "imported", "--registry", str(registry), cwd=root)
    return registry

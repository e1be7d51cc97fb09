"""What the tests share: the shared data sets beside the repository, this build's `carecast`
binary (the command line the package must agree with), and a registry with models trained once."""

import os
import socket
import subprocess
import time
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


@pytest.fixture()
def server(registry, tmp_path):
    """`carecast serve --insecure-demo` over the registry on a free port, its trail in
    `tmp_path/server-audit.jsonl`; yields its address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    process = subprocess.Popen(
        [carecast_bin(), "serve", "--addr", address, "--insecure-demo", "--registry", str(registry),
         "--audit", str(tmp_path / "server-audit.jsonl")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    started = time.monotonic()
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert process.poll() is None, "the server exited"
            assert time.monotonic() - started < 60, "the server did not start"
            time.sleep(0.05)
    yield address
    process.kill()
    process.wait()

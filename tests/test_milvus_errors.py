"""A Milvus that cannot be reached or refuses a call is one error line naming the server, the call and the fix;
a Milvus 2.3 server (no INVERTED scalar index) still gets its knowledge base's collections."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from index import milvus_schema as ms
from index.errors import MilvusFailed
from index.milvus_uri import GuardedClient, parse_kb_location
from ui.errors import FAILED, exit_code

ROOT = Path(__file__).resolve().parents[1]
OLD_SERVER = "index type not match: invalid parameter[expected=Trie][actual=INVERTED]"  # Milvus 2.3.5's words


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_milvus_server_is_one_error_line_and_exit_1() -> None:
    uri = f"milvus://127.0.0.1:{_closed_port()}/hr"
    run = subprocess.run([str(Path(sys.executable).parent / "index"), "search", "pain", "--kb", uri], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert run.returncode == FAILED, run.stderr
    assert "Traceback" not in run.stderr and "MilvusException" not in run.stderr
    assert f"error: Milvus at {uri}: connect failed" in run.stderr and "is the server running" in run.stderr


class Refusing:
    """A stand-in client: ``query`` fails as a server refusing it would; ``uri`` is a plain attribute."""

    uri = "http://db:19530"

    def query(self, *args: Any, **kwargs: Any) -> list:
        raise MilvusException(code=1100, message="field nope not exist")


def test_a_refused_call_names_the_server_and_the_call() -> None:
    client = GuardedClient(Refusing(), parse_kb_location("milvus://db:19530/hr"), MilvusException)
    assert client.uri == "http://db:19530"
    with pytest.raises(MilvusFailed) as err:
        client.query("hr_docs", filter="nope == 1")
    assert str(err.value).startswith("Milvus at milvus://db:19530/hr: query failed: field nope not exist")
    assert exit_code(err.value) == FAILED and isinstance(err.value.__cause__, MilvusException)


class Recording:
    """A stand-in client that records the scalar index types asked for; ``refuse``: the error for INVERTED."""

    def __init__(self, refuse: str | None) -> None:
        self.refuse, self.scalar, self.loaded = refuse, [], []

    def has_collection(self, name: str) -> bool:
        return False

    def prepare_index_params(self) -> Any:
        return MilvusClient.prepare_index_params()

    def create_collection(self, name: str, **kwargs: Any) -> None:
        pass

    def release_collection(self, name: str) -> None:
        pass

    def create_index(self, name: str, index: Any) -> None:
        (params,) = list(index)
        if params.index_type == "INVERTED" and self.refuse:
            raise MilvusException(code=1100, message=self.refuse)
        self.scalar.append((params.field_name, params.index_type))

    def load_collection(self, name: str) -> None:
        self.loaded.append(name)


@pytest.mark.parametrize(("refuse", "made"), [(None, "INVERTED"), (OLD_SERVER, "")])
def test_scalar_indexes_are_inverted_or_the_servers_default_on_milvus_2_3(refuse: str | None, made: str) -> None:
    client = Recording(refuse)
    ms.create(GuardedClient(client, parse_kb_location("milvus://db:19530/hr"), MilvusException), "hr", 4)
    assert ("doc_sha256", made) in client.scalar and ("path_key", made) in client.scalar
    assert ("sha256", made) in client.scalar  # paths' sha256 (the primary key of docs gets none)
    assert sorted(client.loaded) == sorted(ms.names("hr").values())


def test_another_index_failure_is_not_hidden() -> None:
    with pytest.raises(MilvusFailed, match="create_index failed: disk quota exceeded"):
        ms.create(GuardedClient(Recording("disk quota exceeded"), parse_kb_location("milvus://db:19530/hr"),
                                MilvusException), "hr", 4)


def test_migrate_refuses_a_mistyped_scheme_a_file_and_a_folder_of_other_files(tmp_path: Path) -> None:
    """Found by a new user: `--to milvus-lit:...` and `--to http://...` made folders so named and exited 0, and a
    folder of the user's own files got kb.sqlite written in among them. Each is now one error line, exit 2, and
    nothing is created."""
    from typer.testing import CliRunner

    from index.kb import KnowledgeBase
    from ui.cli.index import app

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Cats and dogs are common pets. " * 8)
    with KnowledgeBase.open(tmp_path / "kb", embedder="hash-64") as kb:
        kb.add([docs])
    (tmp_path / "plain").write_text("x")
    cases = {f"milvus-lit:{tmp_path}/z.db": "unknown scheme 'milvus-lit'",
             "http://127.0.0.1:19530/kb": "unknown scheme 'http'",
             str(tmp_path / "plain"): "a file",
             str(docs): "a folder with other files, not a knowledge base"}
    for target, said in cases.items():
        result = CliRunner().invoke(app, ["migrate", "--from", str(tmp_path / "kb"), "--to", target])
        assert result.exit_code == 2, (target, result.output)
        assert said in result.output and "Traceback" not in result.output, result.output
    assert sorted(p.name for p in docs.iterdir()) == ["a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs", "kb", "plain"]


def test_a_port_that_is_not_a_number_and_a_lite_file_are_one_error_line_each(tmp_path: Path) -> None:
    """Found by a new user: `milvus://HOST:notaport/kb` gave pymilvus's "Port could not be cast to integer value"
    naming neither the URI nor the form, and `milvus-lite:FILE.db` where FILE.db is a regular file was diagnosed as
    "another process using this folder" after a traceback."""
    from typer.testing import CliRunner

    from ui.cli.index import app

    (tmp_path / "file.db").write_text("not a folder")
    cases = {"milvus://127.0.0.1:notaport/kb": "'milvus://127.0.0.1:notaport/kb': the port 'notaport' is not a number",
             f"milvus-lite:{tmp_path}/file.db/kb": "file.db is a file, not a Milvus Lite data folder"}
    for kb, said in cases.items():
        result = CliRunner().invoke(app, ["search", "x", "--kb", kb])
        assert result.exit_code == 2 and said in result.output, result.output
        assert "Traceback" not in result.output

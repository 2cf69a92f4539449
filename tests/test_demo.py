"""The demo: its documents load with the right text per page, and the demo finds the answers."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.load import load_document

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "demo" / "docs"


def _load_demo():
    spec = importlib.util.spec_from_file_location("run_demo", ROOT / "demo" / "run_demo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_demo"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


demo = _load_demo()

# (file, page, facts that must be extracted from that page)
FACTS = [
    ("yunshan_employee_handbook.pdf", 1, ["第一章 总则与工作时间", "上午9:00至下午18:00", "试用期一般为3个月"]),
    ("yunshan_employee_handbook.pdf", 2, ["第二章 休假制度", "第一年为7天", "次年3月31日", "产假158天"]),
    ("yunshan_employee_handbook.pdf", 3, ["每晚不超过600元", "每月10日和25日", "内线电话8000"]),
    ("nordhaven_hv320_manual.pdf", 1, ["Technical specifications", "45 minutes in Eco mode"]),
    ("nordhaven_hv320_manual.pdf", 2, ["Replace the HEPA filter", "Every 12 months"]),
    ("nordhaven_hv320_manual.pdf", 3, ["restocking fee of 15 percent", "0800 555 0132"]),
]


def _squash(text: str) -> str:
    return "".join(text.split())  # PDF line breaks fall anywhere inside Chinese sentences


@pytest.mark.parametrize("name", sorted({f for f, _, _ in FACTS}))
def test_demo_pdfs_load_page_by_page(name: str) -> None:
    doc = load_document(DOCS / name)
    assert doc.kind == "pdf" and not doc.ocr_pages and not doc.warnings
    assert [p.number for p in doc.pages] == [1, 2, 3]
    for file, page, facts in FACTS:
        if file == name:
            text = _squash(doc.pages[page - 1].text)
            assert [f for f in facts if _squash(f) not in text] == [], f"{name} page {page}"


def test_demo_docs_are_small_and_complete() -> None:
    files = sorted(p.name for p in DOCS.iterdir())
    assert files == ["hv320_service_faq.md", "nordhaven_hv320_manual.pdf", "yunshan_employee_handbook.pdf"]
    assert all((DOCS / f).stat().st_size < 100_000 for f in files)
    md = load_document(DOCS / "hv320_service_faq.md")
    assert [p.number for p in md.pages] == [1] and "HF-320" in md.pages[0].text
    assert {ex.file for ex in demo.EXAMPLES} <= set(files)


def test_snippet_shows_the_answer_sentence() -> None:
    zh, en = (load_document(DOCS / ex.file).pages[ex.page - 1].text for ex in demo.EXAMPLES)
    assert "第一年为7天" in _squash(demo.snippet(zh, demo.EXAMPLES[0].question, width=400))
    assert "restocking fee" in demo.snippet(en, demo.EXAMPLES[1].question, width=400)
    long = demo.snippet("word " * 100, "word", width=50)
    assert len(long) == 50 and long.endswith("…")


@pytest.mark.integration
def test_demo_finds_the_answers_with_the_default_embedder(tmp_path: Path, capsys) -> None:
    from index.kb import KnowledgeBase

    kb_dir = tmp_path / "kb"
    assert demo.main(["--kb", str(kb_dir)]) == 0
    out = capsys.readouterr().out
    assert "ingest summary" in out and "3 added" in out
    assert all(ex.question[:20] in out for ex in demo.EXAMPLES)
    with KnowledgeBase.open(kb_dir) as kb:  # the default embedder, as recorded
        assert kb.embedder.name == "multilingual-e5-small"
        again = demo.ingest(kb)
        assert [f.status for f in again.files] == ["unchanged"] * 3
        for ex in demo.EXAMPLES:
            top = demo.retrieve(kb, ex.question, k=3)[0]
            assert Path(top.path).name == ex.file, (ex.question, top.path, top.text[:200])
            assert top.page_start <= ex.page <= top.page_end, (ex.question, top.page_start, top.page_end)


# --- the model: cached, downloaded, or why not (the hub here is unreachable: it fails at once) ---

REPO = "Qwen/Qwen3-0.6B"


def _fake_snapshot(cache: Path, repo_id: str, files: dict[str, str]) -> Path:
    """A Hugging Face cache entry of ``repo_id`` as snapshot_download leaves it: refs/main -> snapshots/<hash>/."""
    entry = cache / ("models--" + repo_id.replace("/", "--"))
    (entry / "refs").mkdir(parents=True, exist_ok=True)
    (entry / "refs" / "main").write_text("0" * 40)
    folder = entry / "snapshots" / ("0" * 40)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def _closed_endpoint() -> str:
    """An http address on this machine where nothing listens: a connection to it is refused at once."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch) -> Path:
    """An empty Hugging Face cache, so that no copy cached on this machine hides the download path."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


@pytest.fixture
def hub_unreachable(hub_cache: Path, monkeypatch) -> Path:
    """Offline mode off and the hub at a closed local port: the real request path, refused at once."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", _closed_endpoint())
    return hub_cache


def test_download_refuses_in_offline_mode_without_asking_the_hub(hub_cache: Path, monkeypatch) -> None:
    from huggingface_hub import HfApi

    from finetune.download import download_model, plan_download
    from finetune.train_errors import ModelDownloadError, ModelLoadError

    def no_hub(*_a, **_k):
        raise AssertionError("the hub was asked in offline mode")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(HfApi, "model_info", no_hub)
    for call in (plan_download, download_model):
        with pytest.raises(ModelDownloadError) as err:
            call(REPO)
        assert isinstance(err.value, ModelLoadError)  # the ui's error table maps it as a model that does not load
        message = str(err.value)
        assert "HF_HUB_OFFLINE is set" in message and "unset HF_HUB_OFFLINE" in message
        assert f"hf download {REPO} --local-dir ./Qwen3-0.6B" in message and "--model ./Qwen3-0.6B" in message


def test_download_says_the_hub_cannot_be_reached(hub_unreachable: Path) -> None:
    from finetune.download import download_model
    from finetune.train_errors import ModelDownloadError

    with pytest.raises(ModelDownloadError, match="hub cannot be reached") as err:
        download_model(REPO)
    assert "ConnectError" in str(err.value) and f"hf download {REPO}" in str(err.value)
    assert not list(hub_unreachable.rglob("*.safetensors"))


def test_plan_download_sizes_the_model_files(monkeypatch) -> None:
    import types

    import httpx2
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.hf_api import RepoSibling

    from finetune.download import plan_download
    from finetune.train_errors import ModelDownloadError

    files = {"config.json": 700, "model.safetensors": 1_503_300_000, "tokenizer.json": 11_400_000,
             "README.md": 14_000, "pytorch_model.bin": 1_500_000_000, ".gitattributes": 1_500}
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    answer = types.SimpleNamespace(siblings=[RepoSibling(rfilename=n, size=b) for n, b in files.items()])
    monkeypatch.setattr(HfApi, "model_info", lambda self, repo_id, **kw: answer)
    plan = plan_download(REPO)
    assert plan.files == ("config.json", "model.safetensors", "tokenizer.json") and not plan.approximate
    assert plan.size_bytes == 700 + 1_503_300_000 + 11_400_000 and plan.size_text == "1.51 GB"

    def busy(self, repo_id, **kw):  # the hub answers, but not with the file list: the known size is stated
        raise HfHubHTTPError("429 Too Many Requests", response=httpx2.Response(429, request=httpx2.Request("GET", "x")))

    monkeypatch.setattr(HfApi, "model_info", busy)
    assert plan_download(REPO).size_text == "about 1.5 GB" and plan_download("org/other").size_text == "size unknown"
    answer.siblings = [RepoSibling(rfilename="config.json", size=1), RepoSibling(rfilename="pytorch_model.bin", size=9)]
    monkeypatch.setattr(HfApi, "model_info", lambda self, repo_id, **kw: answer)
    with pytest.raises(ModelDownloadError, match="no safetensors weights"):
        plan_download(REPO)


def test_download_model_fetches_the_planned_files_into_the_cache(hub_cache: Path, monkeypatch) -> None:
    import huggingface_hub

    from finetune.download import DownloadPlan, cached_model, download_model

    real, fetched = huggingface_hub.snapshot_download, []

    def fake_snapshot(repo_id, **kw):  # the transfer, as huggingface_hub leaves it in the cache
        if kw.get("local_files_only"):
            return real(repo_id, **kw)
        fetched.append(kw["allow_patterns"])
        return str(_fake_snapshot(hub_cache, repo_id, {p: "{}" for p in kw["allow_patterns"]}))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    assert cached_model("org/tiny") is None
    plan = DownloadPlan("org/tiny", ("config.json", "model.safetensors"), 2_500_000, approximate=False)
    folder = download_model("org/tiny", plan=plan)
    assert fetched == [["config.json", "model.safetensors"]] and (folder / "model.safetensors").is_file()
    assert download_model("org/tiny") == folder and len(fetched) == 1  # cached now: neither planned nor fetched


def test_cached_model_needs_config_and_every_weight_shard(hub_cache: Path) -> None:
    from finetune.download import cached_model

    index = '{"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}}'
    folder = _fake_snapshot(hub_cache, "org/sharded", {"config.json": "{}", "model.safetensors.index.json": index,
                                                       "model-1.safetensors": ""})
    assert cached_model("org/sharded") is None  # an interrupted download
    (folder / "model-2.safetensors").write_text("")
    assert cached_model("org/sharded") == folder
    _fake_snapshot(hub_cache, "org/no-config", {"model.safetensors": ""})
    assert cached_model("org/no-config") is None and cached_model("not a repo id!") is None


def _choose(argv: list[str]) -> tuple[object, str]:
    from rich.console import Console

    console = Console(record=True, width=200)
    return demo.choose_model(console, demo.parse_args(argv)), console.export_text()


def test_demo_says_why_no_model_when_the_hub_is_unreachable(hub_unreachable: Path) -> None:
    model, out = _choose([])
    assert model is None
    assert "No model, so no generated answers" in out and "hub cannot be reached" in out and demo.NO_MODEL in out


def test_demo_uses_a_cached_or_local_model_and_no_download_never_asks_the_hub(hub_unreachable: Path,
                                                                              monkeypatch) -> None:
    import finetune.download as download
    import finetune.loading as loading

    def no_hub(*_a, **_k):
        raise AssertionError("the hub was asked")

    for module, name in ((download, "plan_download"), (download, "download_model"), (loading, "hub_unreachable")):
        monkeypatch.setattr(module, name, no_hub)
    model, out = _choose(["--no-download"])
    assert model == REPO and f"--no-download: {REPO} is not in the Hugging Face cache and the hub is not asked" in out
    folder = _fake_snapshot(hub_unreachable, REPO, {"config.json": "{}", "model.safetensors": ""})
    assert _choose([])[0] == _choose(["--no-download"])[0] == str(folder)
    assert _choose(["--model", str(folder)])[0] == str(folder)
    assert _choose(["--model", "./no-such-model"])[0] == "./no-such-model"  # the loader says what is wrong


def test_demo_options() -> None:
    args = demo.parse_args(["--max-new-tokens", "64", "--no-download"])
    assert args.max_new_tokens == 64 and args.no_download and demo.parse_args([]).max_new_tokens == 256
    with pytest.raises(SystemExit):
        demo.parse_args(["--max-new-tokens", "0"])


def _run_demo(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    """run_demo.py in a fresh interpreter as `make demo` runs it (HF_HUB_OFFLINE unset), with an empty cache
    and the hub at a closed local port, so that the real request fails at once on any machine."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_HUB_CACHE=str(tmp_path / "hub"), HF_ENDPOINT=_closed_endpoint(), COLUMNS="200")
    return subprocess.run([sys.executable, str(ROOT / "demo" / "run_demo.py"), "--kb", str(tmp_path / "kb"), *flags],
                          env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.integration
def test_make_demo_without_a_reachable_hub_shows_the_passages(tmp_path: Path) -> None:
    run = _run_demo(tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "restocking fee" in run.stdout and "3. answer with citations" in run.stdout
    assert "No model, so no generated answers" in run.stdout and "hub cannot be reached" in run.stdout
    run = _run_demo(tmp_path, "--no-download")  # the same knowledge base, now unchanged
    assert run.returncode == 0, run.stderr[-2000:]
    assert "--no-download: Qwen/Qwen3-0.6B is not in the Hugging Face cache and the hub is not asked" in run.stdout
    assert "hub cannot be reached" not in run.stdout and "restocking fee" in run.stdout

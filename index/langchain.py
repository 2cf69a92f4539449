"""LangChain adapter: a knowledge base as a ``BaseRetriever`` for LangChain chains.

>>> import tempfile
>>> from pathlib import Path
>>> from index import KnowledgeBase
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "faq.txt").write_text("混合检索结合了向量检索和关键词检索。", encoding="utf-8")
>>> kb = KnowledgeBase.open(folder / "kb", embedder="hash-64")
>>> _ = kb.add([str(folder / "faq.txt")])
>>> docs = KnowledgeBaseRetriever(kb=kb, k=4).invoke("什么是混合检索？")
>>> docs[0].metadata["title"], docs[0].metadata["page"]
('faq', 1)
>>> kb.close()
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict


class KnowledgeBaseRetriever(BaseRetriever):
    """Returns one LangChain ``Document`` per hit; the metadata carries title, path, page, span, score."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    kb: Any  # index.kb.KnowledgeBase
    k: int = 5
    mode: str = "hybrid"

    def _get_relevant_documents(self, query: str, *,
                                run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        hits = self.kb.search(query, k=self.k, mode=self.mode)
        return [Document(page_content=h.text,
                         metadata={key: v for key, v in asdict(h).items() if key != "text"} | {"page": h.page})
                for h in hits]

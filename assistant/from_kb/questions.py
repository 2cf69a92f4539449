"""Question generation from chunks (``finetune data from-kb --generate-questions N``), for users who
have documents but no Q&A.

N chunks are sampled (seeded) from the knowledge base, all of them when N >= their count. For each,
a generator model (local, or any OpenAI-compatible ``--endpoint``, through
:func:`assistant.backends.make_backend`) is asked, greedily and without thinking, for ONE question a
user could ask and its answer taken from the chunk, in the chunk's language, as two lines
``Q: ...`` / ``A: ...`` (``问：`` / ``答：`` for Chinese). :func:`parse_pair` reads that robustly
(also bold labels, "Question:", JSON ``{"question", "answer"}``, a ``<think>`` block before it);
an unusable output is reported and skipped: no pair in it, the prompt's own ``<question>`` slot
echoed back, or an answer not grounded in its chunk (:func:`grounded`: fewer than half of the
answer's content words — BM25's tokens, :func:`index.tokenize.tokenize` — occur in the chunk, as
when a small model invents a question about something else). Each pair keeps its chunk id (and
document sha256 and page) as gold, then goes through the same record building as a Q&A file.

>>> parse_pair("<think>hm</think>\\n**Q:** How long is the laptop warranty?\\n**A:** Two years.")
('How long is the laptop warranty?', 'Two years.')
>>> parse_pair("问：退货期限是多久？\\n答：购买后三十天内。"), parse_pair("I cannot help with that.")
(('退货期限是多久？', '购买后三十天内。'), None)
>>> parse_pair("Q: <question>\\nA: <answer>") is None  # the template echoed back
True
>>> grounded("The warranty lasts two years.", "Every laptop carries a two-year warranty.")
True
>>> grounded("The United States is the world's largest economy.", "Green tea contains catechins.")
False
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from assistant.backends import make_backend
from assistant.backends.base import GenParams
from assistant.errors import BackendError
from assistant.from_kb.gold import Gold
from assistant.qa import QAItem
from common.cjk import is_chinese
from common.files import atomic_write_jsonl
from finetune.records import Problem

if TYPE_CHECKING:
    from assistant.answer import Assistant
    from assistant.from_kb.config import FromKBConfig
    from index.records import Hit

GEN_TOKENS = 256  # one question and a one-or-two-sentence answer
MAX_QUESTION_CHARS, MAX_ANSWER_CHARS = 300, 1000  # longer: the model rambled
UNPARSABLE = "unparsable generation"
UNGROUNDED = "answer not in its chunk"
MIN_SUPPORT = 0.5  # share of the answer's content words that must occur in its chunk: a one-or-two-sentence
# answer taken from the chunk keeps most of its words even reworded; an invented one shares few or none
_SLOT = re.compile(r"^<[^<>]{0,20}>$")  # a bare placeholder (<question>, <问题>): the model copied the template
GEN_SYSTEM_EN = (
    "You write training questions for a document assistant. Read the passage and write ONE question "
    "that a user of these documents might ask and that the passage answers, and the answer taken from "
    "the passage. The question must make sense without the passage (name what it is about; never say "
    "'the passage' or 'the text'). The answer: one or two sentences with only facts stated in the "
    "passage. Write in the language of the passage. Output exactly two lines and nothing else:\n"
    "Q: <question>\nA: <answer>")
GEN_SYSTEM_ZH = (
    "你为文档助手编写训练问题。阅读下面的段落，写出一个文档用户可能会问、且该段落能够回答的问题，以及取自该段落的答案。"
    "问题脱离段落也要能看懂（写明所问的对象，不要说“这段话”“本文”）。答案用一两句话，只包含段落中写明的事实。"
    "用段落的语言书写。只输出两行，不要输出其他内容：\n问：<问题>\n答：<答案>")
_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)
_LABEL = r"^[\s>*#\-]*(?:\*\*)?\s*({})\s*\d*\s*(?:\*\*)?\s*[:：]\s*(?:\*\*)?\s*"
_Q = re.compile(_LABEL.format("q|question|问题|问"), re.IGNORECASE)
_A = re.compile(_LABEL.format("a|answer|答案|回答|答"), re.IGNORECASE)
_JSON = re.compile(r"\{.*\}", re.DOTALL)


@dataclass(frozen=True)
class GeneratedPair:
    """A generated question and answer, and the chunk they came from."""

    question: str
    answer: str
    chunk_id: str
    doc_sha256: str
    title: str
    page: int

    def as_gold(self) -> Gold:
        item = QAItem(self.question, (self.answer,), f"generated:{self.chunk_id}", doc=self.doc_sha256,
                      page=self.page)
        return Gold(item, chunk_id=self.chunk_id)

    def as_dict(self) -> dict:
        """A record :func:`assistant.qa.read_qa` reads back (doc = sha256, so it is unambiguous)."""
        return {"question": self.question, "answer": self.answer, "doc": self.doc_sha256, "page": self.page,
                "title": self.title, "chunk_id": self.chunk_id}


def generation_messages(chunk: "Hit") -> list[dict]:
    """The chat messages asking for one Q&A pair grounded in ``chunk``, in its language."""
    zh = is_chinese(chunk.text)
    system, label = (GEN_SYSTEM_ZH, "段落") if zh else (GEN_SYSTEM_EN, "Passage")
    return [{"role": "system", "content": system},
            {"role": "user", "content": f"{label} ({chunk.title}, p. {chunk.page_start}):\n{chunk.text.strip()}"}]


def _clean(text: str) -> str:
    return " ".join(text.replace("**", "").split()).strip().strip("\"“”「」")


def _labelled(text: str) -> tuple[str, str] | None:
    question: list[str] | None = None
    answer: list[str] | None = None
    for line in text.splitlines():
        q, a = _Q.match(line), _A.match(line)
        if answer is not None and (q or not line.strip()):
            break  # the answer ends at a blank line or the next question
        if q and question is None:
            question = [line[q.end():]]
        elif a and question is not None and answer is None:
            answer = [line[a.end():]]
        elif answer is not None:
            answer.append(line)
        elif question is not None:
            question.append(line)
    if not question or not answer:
        return None
    return _clean(" ".join(question)), _clean(" ".join(answer))


def _json_pair(text: str) -> tuple[str, str] | None:
    match = _JSON.search(text)
    if match is None:
        return None
    try:
        value = json.loads(match.group())
    except json.JSONDecodeError:
        return None
    if not isinstance(value, dict):
        return None
    q, a = value.get("question", value.get("问题")), value.get("answer", value.get("答案"))
    return (_clean(q), _clean(a)) if isinstance(q, str) and isinstance(a, str) else None


def parse_pair(text: str) -> tuple[str, str] | None:
    """(question, answer) from a generator's output, or None when it holds no usable pair."""
    text = _THINK.sub("", text).strip()
    pair = _json_pair(text) if text.startswith(("{", "```")) else None
    pair = pair or _labelled(text)
    if pair is None:
        return None
    question, answer = pair
    if not question or not answer or len(question) > MAX_QUESTION_CHARS or len(answer) > MAX_ANSWER_CHARS:
        return None
    if _SLOT.match(question) or _SLOT.match(answer):
        return None
    return question, answer


def grounded(answer: str, chunk_text: str) -> bool:
    """Whether at least :data:`MIN_SUPPORT` of the answer's content words (BM25's tokens: stemmed English
    words without stop-words, jieba words for Chinese) occur in the chunk; an answer with none passes."""
    from index.tokenize import tokenize

    words = tokenize(answer)
    if not words:
        return True
    present = set(tokenize(chunk_text))
    return sum(w in present for w in words) >= MIN_SUPPORT * len(words)


def sample_chunks(kb: Any, n: int, seed: int) -> list["Hit"]:
    """``n`` chunks of the knowledge base picked with ``seed`` (all of them when n >= their count), in store order."""
    ids = kb.store.chunk_ids().tolist()
    picked = sorted(random.Random(seed).sample(ids, n)) if n < len(ids) else ids
    return kb.store.hits([(i, 0.0) for i in picked])


def generate_pairs(backend: Any, chunks: Sequence["Hit"], *,
                   progress: bool = False) -> tuple[list[GeneratedPair], list[Problem]]:
    """One generated pair per chunk where the output parses; a Problem for each that does not."""
    from tqdm.auto import tqdm

    params = GenParams(max_new_tokens=GEN_TOKENS, temperature=0.0, thinking=False, use_adapter=False)
    pairs: list[GeneratedPair] = []
    problems: list[Problem] = []
    for chunk in tqdm(chunks, desc="generate", unit="chunk", disable=not progress):
        source = f"generated:{chunk.chunk_id}"
        try:
            text = "".join(backend.generate(generation_messages(chunk), params))
        except BackendError as err:
            problems.append(Problem(source, "generation failed", f"{source}: the generator failed ({err}); skipped"))
            continue
        pair = parse_pair(text)
        if pair is None:
            problems.append(Problem(source, UNPARSABLE, f"{source} ({chunk.title}, p. {chunk.page_start}): the "
                                    f"generator's output is not 'Q: ...' / 'A: ...' ({text.strip()[:80]!r}); skipped"))
            continue
        if not grounded(pair[1], chunk.text):
            problems.append(Problem(source, UNGROUNDED, f"{source} ({chunk.title}, p. {chunk.page_start}): the "
                                    f"generated answer {pair[1][:80]!r} is not taken from the chunk; skipped"))
            continue
        pairs.append(GeneratedPair(*pair, chunk.chunk_id, chunk.doc_sha256, chunk.title, chunk.page_start))
    return pairs, problems


def generator_backend(config: "FromKBConfig", bot: "Assistant") -> Any:
    """The generator: ``--endpoint`` (model ``generator_model`` or ``model``), another local model, or
    the assistant's own local backend when the generator is ``model`` itself (loaded once)."""
    settings = config.generator_config()
    if settings is None or (not settings.endpoint and settings.model == config.model):
        return bot.backend
    return make_backend(settings)


def generate_golds(config: "FromKBConfig", bot: "Assistant", generator: Any = None, *,
                   progress: bool = False) -> tuple[list[Gold], list[Problem], dict[str, int]]:
    """Gold questions generated from ``config.generate_questions`` sampled chunks (and ``--qa-out`` written)."""
    chunks = sample_chunks(bot.kb, config.generate_questions, config.seed)
    pairs, problems = generate_pairs(generator or generator_backend(config, bot), chunks, progress=progress)
    if config.qa_out is not None:
        atomic_write_jsonl(config.qa_out, (p.as_dict() for p in pairs))
    counts = {"chunks": len(chunks), "pairs": len(pairs), "unparsable": sum(p.reason == UNPARSABLE for p in problems),
              "ungrounded": sum(p.reason == UNGROUNDED for p in problems)}
    return [p.as_gold() for p in pairs], problems, counts

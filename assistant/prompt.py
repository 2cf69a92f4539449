"""The one prompt builder, used at inference AND to build fine-tuning data (same prompt both ways).

Layout: one system message (the system prompt, then the retrieved chunks numbered [1]..[n]
with title and page), then the conversation so far, then the question. The system prompt is the
grounding instructions (:data:`DEFAULT_SYSTEM_PROMPT`), after a persona or domain prompt when
there is one (:func:`compose_system`; which one an adapter gets: :mod:`assistant.adapter_prompt`). The prompt is fitted
to a token budget: history is trimmed first (oldest turns first), then sources are dropped
(lowest-ranked first).

>>> from index.records import Hit
>>> hit = Hit("c1", "Returns are accepted within 30 days.", 0.9, "sha", "policy", "policy.txt", 2, 2, 0, 36)
>>> msgs, used = build_messages("How long can I return?", [hit], [], system="S",
...                             count_tokens=lambda m: sum(len(x["content"].split()) for x in m), budget=100)
>>> print(msgs[0]["content"])
S
<BLANKLINE>
Sources:
<BLANKLINE>
[1] policy (p. 2)
Returns are accepted within 30 days.
>>> msgs[-1], len(used)
({'role': 'user', 'content': 'How long can I return?'}, 1)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from assistant.citations import strip_citations  # past answers' marks go

if TYPE_CHECKING:
    from index.records import Hit

DEFAULT_SYSTEM_PROMPT = (
    "You are a careful assistant. Answer the user's question using ONLY the numbered sources "
    "below. Cite the sources you use with their numbers in square brackets, like [1] or [2][3], "
    "right after the facts they support. If the sources do not contain the answer, say that the "
    "documents do not contain it instead of guessing. Answer in the language of the question.\n"
    "你是一个严谨的助手。只根据下面编号的资料回答用户的问题，并在相应内容后用方括号标注所依据的资料编号，"
    "如 [1] 或 [2][3]。如果资料中没有答案，请直接说明文档中没有相关内容，不要猜测。用提问所用的语言回答。"
)
SOURCES_HEADING = "Sources:"
NO_SOURCES = "(no sources)"

CountTokens = Callable[[list[dict]], int]


def compose_system(persona: str | None, grounding: str = DEFAULT_SYSTEM_PROMPT) -> str:
    """A persona or domain prompt followed by the grounding instructions (cite [n], say when the
    documents do not hold the answer); the grounding alone without a persona, the persona alone
    when it already holds the grounding text.

    >>> print(compose_system("现在你要扮演皇帝身边的女人--甄嬛", "Answer from the sources."))
    现在你要扮演皇帝身边的女人--甄嬛
    <BLANKLINE>
    Answer from the sources.
    >>> compose_system(None, "G"), compose_system("You are terse. G", "G")
    ('G', 'You are terse. G')
    """
    persona, grounding = (persona or "").strip(), grounding.strip()
    if not persona:
        return grounding
    return persona if grounding in persona else f"{persona}\n\n{grounding}"


def format_source(number: int, hit: "Hit") -> str:
    """``[n] title (p. 3)`` (or ``pp. 3-4``) and the chunk text."""
    pages = f"p. {hit.page_start}" if hit.page_end == hit.page_start else f"pp. {hit.page_start}-{hit.page_end}"
    return f"[{number}] {hit.title} ({pages})\n{hit.text.strip()}"


def system_message(system: str, sources: Sequence["Hit"]) -> dict:
    """The system prompt followed by the numbered sources."""
    block = "\n\n".join(format_source(i, h) for i, h in enumerate(sources, 1)) or NO_SOURCES
    return {"role": "system", "content": f"{system.strip()}\n\n{SOURCES_HEADING}\n\n{block}"}


def _conversation(history: Sequence[Mapping[str, str]]) -> list[dict]:
    out = []
    for msg in history:
        content = msg["content"]
        out.append({"role": msg["role"],
                    "content": strip_citations(content) if msg["role"] == "assistant" else content})
    return out


def _largest(n: int, fits: Callable[[int], bool]) -> int:
    """Largest m in [0, n] with fits(m) (fits is monotone: true up to some m), or -1 if none."""
    if fits(n):
        return n
    lo, hi = -1, n  # invariant: fits(lo) or lo == -1; not fits(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def build_messages(question: str, sources: Sequence["Hit"], history: Sequence[Mapping[str, str]] | None,
                   *, system: str, count_tokens: CountTokens, budget: int) -> tuple[list[dict], list["Hit"]]:
    """Chat messages for ``question`` and the sources that fitted in ``budget`` tokens.

    ``sources`` are in rank order (best first); ``history`` is a list of
    ``{"role": "user"|"assistant", "content": ...}`` messages, oldest first.
    ``count_tokens(messages)`` counts the tokens of the rendered prompt (generation prompt
    included). History is trimmed oldest turn first, then the lowest-ranked sources are
    dropped. Raises :class:`assistant.errors.PromptTooLong` if the question alone does not fit.
    """
    from assistant.errors import PromptTooLong

    conv = _conversation(history or [])
    turn_starts = [i for i, m in enumerate(conv) if m["role"] == "user"] + [len(conv)]
    question_msg = {"role": "user", "content": question}

    def build(n_sources: int, first_turn: int) -> list[dict]:
        return [system_message(system, sources[:n_sources]), *conv[first_turn:], question_msg]

    def fits(n_sources: int, first_turn: int) -> bool:
        return count_tokens(build(n_sources, first_turn)) <= budget

    n, turns = len(sources), len(turn_starts) - 1
    # Trim history first: keep the most recent turns that still let every source fit.
    keep = _largest(turns, lambda m: fits(n, turn_starts[turns - m]))
    if keep >= 0:
        return build(n, turn_starts[turns - keep]), list(sources)
    # No history left: drop the lowest-ranked sources.
    n = _largest(n, lambda m: fits(m, len(conv)))
    if n < 0:
        need = count_tokens(build(0, len(conv)))
        raise PromptTooLong(f"the question alone needs {need} prompt tokens but only {budget} are "
                            "available; shorten it, lower --max-new-tokens or raise --context-tokens")
    return build(n, len(conv)), list(sources[:n])

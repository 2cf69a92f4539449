"""The local backend: a transformers causal LM (HF id, base or merged folder, .gguf file) plus an optional PEFT adapter.

Everything model-side is finetune's, so serving sees what training saw: the model, adapter and
tokenizer load through :mod:`finetune.loading` (the adapter's own tokenizer and chat template when it
saved one, else the ChatML fallback training used), prompts are :func:`finetune.template.prompt_ids`,
and decoding, stopping at the end of turn and cancellable streaming are :mod:`finetune.generation`.
This class adds laziness, thread safety and the assistant's settings (adapter on/off per call).

>>> from assistant.backends.local import LocalBackend
>>> from assistant.backends.base import GenParams
>>> backend = LocalBackend("path/to/Qwen3-0.6B", adapter="outputs/qwen3-lora")   # loads nothing yet
>>> "".join(backend.generate([{"role": "user", "content": "Hi"}], GenParams(), stream=True))  # doctest: +SKIP
'Hello! How can I help you today?'
"""
from __future__ import annotations

import contextlib
import functools
import threading
from typing import Any, Callable, Iterator

from assistant.backends.base import GenParams
from finetune import loading, template
from finetune.generation import Decoding, generate_ids, stream_ids
from finetune.train_errors import ModelLoadError

DEFAULT_CONTEXT = 4096  # tokens, when the model's config does not say


@contextlib.contextmanager
def retrieval_only_hint() -> Iterator[None]:
    """Add the assistant's way out to a ModelLoadError: answering without a model."""
    try:
        yield
    except ModelLoadError as err:
        raise type(err)(f"{err}. Or run with --retrieval-only to get the retrieved passages without a "
                        "model") from err


class LocalBackend:
    """A transformers causal LM (HF id, base or merged folder, .gguf file) plus an optional PEFT adapter.

    Loads lazily: the tokenizer on the first token count, the model on the first generation, both
    through :mod:`finetune.loading` (ModelLoadError says what to pass to --model). Generation is
    serialised by a lock (one model, many threads); tokenizing is too, since a fast tokenizer must
    not be used from two threads at once. dtype: fp32 on CPU, bf16 on GPUs that have it (else fp16).
    """

    def __init__(self, model: str, adapter: str | None = None, *, device: str = "auto",
                 context_tokens: int | None = None) -> None:
        self.model_name, self.adapter = model, adapter
        self.device_name, self._context = device, context_tokens
        self._tok: Any = None
        self._model: Any = None
        self._gen_lock = threading.Lock()
        self._tok_lock = threading.Lock()
        self._load_lock = threading.Lock()

    # -- loading ----------------------------------------------------------------------
    def tokenizer(self) -> Any:
        """The tokenizer with the chat template prompts are rendered with (the adapter's own if it has one)."""
        with self._load_lock:
            if self._tok is None:
                with retrieval_only_hint():
                    self._tok = loading.load_chat_tokenizer(self.model_name, self.adapter)
        return self._tok

    def model(self) -> Any:
        """The model in eval mode on its device, with the adapter applied when one is set."""
        self.tokenizer()  # generation needs it too; a tokenizer that does not load fails first, and cheaply
        with self._load_lock:
            if self._model is None:
                device = loading.resolve_device(self.device_name)
                with retrieval_only_hint():
                    precision = loading.resolve_precision("auto", device)
                    model = loading.load_model(self.model_name, device=device, precision=precision)
                if self.adapter:  # its error names the base it was trained on, to pass as --model
                    model = loading.apply_adapter(model, self.adapter, base=self.model_name, base_flag="--model")
                self._model = model.eval()
        return self._model

    # -- Backend protocol -------------------------------------------------------------
    def context_tokens(self) -> int:
        if self._context is None:
            with retrieval_only_hint():
                config = loading.load_config(self.model_name).get_text_config()  # multimodal configs nest the LM's
            self._context = int(getattr(config, "max_position_embeddings", None) or DEFAULT_CONTEXT)
        return self._context

    def render(self, messages: list[dict], *, thinking: bool = False) -> str:
        """The prompt text exactly as the model sees it (chat template, generation prompt)."""
        return self.tokenizer().apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                    enable_thinking=thinking)

    def prompt_ids(self, messages: list[dict], *, thinking: bool = False) -> list[int]:
        """The prompt token ids fed to the model: :func:`finetune.template.prompt_ids`, as in training."""
        tok = self.tokenizer()
        with self._tok_lock:
            return template.prompt_ids(tok, messages, enable_thinking=thinking)

    def count_tokens(self, messages: list[dict], *, thinking: bool = False) -> int:
        return len(self.prompt_ids(messages, thinking=thinking))

    def count_text(self, text: str) -> int:
        """Tokens of ``text`` alone (e.g. a generated answer), no special tokens added."""
        tok = self.tokenizer()
        with self._tok_lock:
            return len(tok.encode(text, add_special_tokens=False))

    def generate(self, messages: list[dict], params: GenParams, *, stream: bool = False,
                 on_first_token: Callable[[], None] | None = None) -> Iterator[str]:
        """Raw generated text (stream: in pieces; closing the iterator stops the generation)."""
        model, tok = self.model(), self.tokenizer()
        prompt = self.prompt_ids(messages, thinking=params.thinking)
        decoding = Decoding(params.max_new_tokens, params.temperature, params.top_p)
        guard = functools.partial(self._guard, model, params)  # entered in the thread that generates
        if stream:
            return stream_ids(model, tok, prompt, decoding, guard=guard, on_first_token=on_first_token)
        return iter([generate_ids(model, tok, prompt, decoding, guard=guard, on_first_token=on_first_token)])

    @contextlib.contextmanager
    def _guard(self, model: Any, params: GenParams) -> Iterator[None]:
        """Hold the generation lock and, for ``use_adapter=False``, run with the adapter disabled."""
        off = self.adapter and not params.use_adapter
        with self._gen_lock, (model.disable_adapter() if off else contextlib.nullcontext()):
            yield

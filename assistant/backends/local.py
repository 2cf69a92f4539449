"""The local backend: a transformers causal LM (HF id, base or merged folder) plus an optional PEFT adapter.

Qwen3's chat template renders the prompt (``enable_thinking`` from the call); a tokenizer without a
template gets the ChatML fallback that ``finetune`` trains with. Streaming runs ``generate`` in a
thread feeding a ``TextIteratorStreamer``; a lock serialises generation on the one model.

>>> from assistant.backends.local import LocalBackend
>>> from assistant.backends.base import GenParams
>>> backend = LocalBackend("path/to/Qwen3-0.6B", adapter="outputs/qwen3-lora")   # loads nothing yet
>>> "".join(backend.generate([{"role": "user", "content": "Hi"}], GenParams(), stream=True))  # doctest: +SKIP
'Hello! How can I help you today?'
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from assistant.backends.base import GenParams, cut_at
from assistant.errors import ModelLoadError

# For tokenizers without a chat template (a base model such as gemma-3-270m): ChatML as Qwen renders it.
# Must equal finetune.template.CHATML_TEMPLATE, so an adapter trained on such a base sees the same prompt.
CHATML_FALLBACK = (
    "{%- if bos_token %}{{- bos_token }}{%- endif %}"  # a base model such as gemma expects its <bos>
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
END_OF_TURN = "<|im_end|>"


def load_failure(model: str, reason: str) -> ModelLoadError:
    return ModelLoadError(
        f"cannot load model {model!r}: {reason}. Point --model at a local model folder (one with "
        "config.json, the weights and the tokenizer, e.g. a copy of Qwen/Qwen3-0.6B or the output of "
        "`finetune merge`), or run with --retrieval-only to get the retrieved passages without a model.")


def resolve_model_folder(model: str) -> Path:
    """A local folder, or the Hugging Face cache/hub copy of ``model``; fails fast offline."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise load_failure(model, f"{path} has no config.json (not a transformers model folder)")
        return path
    if path.is_absolute() or model.startswith((".", "~")) or model.count("/") > 1:
        raise load_failure(model, f"folder {path} does not exist")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, local_files_only=True))
    except Exception:  # not in the cache; the hub's error types vary by version
        pass
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        raise load_failure(model, "it is not in the local Hugging Face cache and HF_HUB_OFFLINE is set")
    try:
        return Path(snapshot_download(model))
    except Exception as exc:
        raise load_failure(model, f"it is not cached here and the hub is unreachable ({type(exc).__name__})") from exc


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class _FirstToken:
    """A streamer that only notices the first generated token (the first ``put`` is the prompt)."""

    def __init__(self, callback: Callable[[], None] | None) -> None:
        self.callback, self.calls = callback, 0

    def put(self, value: Any) -> None:
        self.calls += 1
        if self.calls == 2 and self.callback:
            self.callback()

    def end(self) -> None:
        pass


class LocalBackend:
    """A transformers causal LM (base or merged folder, or HF id) plus an optional PEFT adapter.

    Loads lazily: the tokenizer on the first token count, the model on the first generation.
    Generation is serialised by a lock (one model, many threads); counting is too, since a
    fast tokenizer must not be used from two threads at once.
    """

    def __init__(self, model: str, adapter: str | None = None, *, device: str = "auto",
                 context_tokens: int | None = None) -> None:
        self.model_name, self.adapter = model, adapter
        self.device_name, self._context = device, context_tokens
        self._folder: Path | None = None
        self._tok: Any = None
        self._model: Any = None
        self._gen_lock = threading.Lock()
        self._tok_lock = threading.Lock()
        self._load_lock = threading.Lock()

    # -- loading ----------------------------------------------------------------------
    def folder(self) -> Path:
        if self._folder is None:
            self._folder = resolve_model_folder(self.model_name)
        return self._folder

    def tokenizer(self) -> Any:
        with self._load_lock:
            if self._tok is None:
                self._tok = self._load_tokenizer()
        return self._tok

    def _load_tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        source = self.folder()
        if self.adapter and (Path(self.adapter) / "tokenizer_config.json").is_file():
            source = Path(self.adapter)  # training may have saved its own chat template
        try:
            tok = AutoTokenizer.from_pretrained(str(source))
        except Exception as exc:
            raise load_failure(self.model_name, f"its tokenizer does not load ({type(exc).__name__}: {exc})") from exc
        if not tok.chat_template:
            tok.chat_template = CHATML_FALLBACK
        return tok

    def model(self) -> Any:
        tok = self.tokenizer()
        with self._load_lock:
            if self._model is None:
                self._model = self._load_model(tok)
        return self._model

    def _load_model(self, tok: Any) -> Any:
        import torch
        from transformers import AutoModelForCausalLM

        device = pick_device(self.device_name)
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32  # CPU: fp32 is fastest
        try:
            model = AutoModelForCausalLM.from_pretrained(str(self.folder()), dtype=dtype)
        except Exception as exc:
            raise load_failure(self.model_name, f"its weights do not load ({type(exc).__name__}: {exc})") from exc
        if self.adapter:
            from peft import PeftModel

            try:
                model = PeftModel.from_pretrained(model, str(self.adapter))
            except Exception as exc:
                import json

                cfg = json.loads((Path(self.adapter) / "adapter_config.json").read_text(encoding="utf-8"))
                raise ModelLoadError(f"cannot apply adapter {self.adapter} to {self.model_name}: {type(exc).__name__}: "
                                     f"{exc}. It was trained on {cfg.get('base_model_name_or_path')!r}: "
                                     "point --model at that base model") from exc
        model.to(device).eval()
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        return model

    # -- Backend protocol -------------------------------------------------------------
    def context_tokens(self) -> int:
        if self._context is None:
            import json

            cfg = json.loads((self.folder() / "config.json").read_text(encoding="utf-8"))
            cfg = cfg.get("text_config", cfg)  # multimodal configs nest the LM's
            self._context = int(cfg.get("max_position_embeddings") or 4096)
        return self._context

    def render(self, messages: list[dict], *, thinking: bool = False) -> str:
        """The prompt text exactly as the model sees it (chat template, generation prompt)."""
        return self.tokenizer().apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                    enable_thinking=thinking)

    def count_tokens(self, messages: list[dict], *, thinking: bool = False) -> int:
        text = self.render(messages, thinking=thinking)
        with self._tok_lock:
            return len(self._tok(text, add_special_tokens=False)["input_ids"])

    def generate(self, messages: list[dict], params: GenParams, *, stream: bool = False,
                 on_first_token: Callable[[], None] | None = None) -> Iterator[str]:
        model, tok = self.model(), self.tokenizer()
        prompt = self.render(messages, thinking=params.thinking)
        with self._tok_lock:
            inputs = tok(prompt, return_tensors="pt", add_special_tokens=False)
        kwargs = dict(inputs.to(model.device), **self._decoding(model, tok, params))
        if stream:
            pieces = self._stream(model, tok, kwargs, params, on_first_token)
            stop = self.stop_text(tok)
            return cut_at(pieces, stop) if stop else pieces
        return iter([self._complete(model, tok, kwargs, params, on_first_token)])

    # -- generation -------------------------------------------------------------------
    def _decoding(self, model: Any, tok: Any, params: GenParams) -> dict:
        import copy

        gc = copy.deepcopy(model.generation_config)
        gc.max_new_tokens = params.max_new_tokens
        gc.do_sample = params.temperature > 0
        if gc.do_sample:  # top_k stays the model's own (Qwen3: 20)
            gc.temperature, gc.top_p = params.temperature, params.top_p
        else:
            gc.temperature, gc.top_p, gc.top_k = 1.0, 1.0, 50  # neutral values: no warnings
        stops = {i for i in _as_list(gc.eos_token_id) + [tok.eos_token_id, tok.convert_tokens_to_ids(END_OF_TURN)]
                 if isinstance(i, int) and i != tok.unk_token_id}
        gc.eos_token_id = sorted(stops)
        gc.pad_token_id = tok.pad_token_id
        if self.stop_text(tok):
            gc.stop_strings = [END_OF_TURN]
            return {"generation_config": gc, "tokenizer": tok}
        return {"generation_config": gc}

    @staticmethod
    def stop_text(tok: Any) -> str | None:
        """END_OF_TURN when it is plain text here (ChatML fallback on a foreign vocabulary), else None."""
        return END_OF_TURN if tok.chat_template == CHATML_FALLBACK and END_OF_TURN not in tok.all_special_tokens \
            else None

    def _adapter_off(self, model: Any, params: GenParams) -> Any:
        import contextlib

        if self.adapter and not params.use_adapter:
            return model.disable_adapter()
        return contextlib.nullcontext()

    def _complete(self, model: Any, tok: Any, kwargs: dict, params: GenParams,
                  on_first_token: Callable[[], None] | None) -> str:
        import torch

        with self._gen_lock, self._adapter_off(model, params), torch.inference_mode():
            out = model.generate(**kwargs, streamer=_FirstToken(on_first_token))
        text = tok.decode(out[0, kwargs["input_ids"].shape[1]:], skip_special_tokens=True)
        stop = self.stop_text(tok)
        return text.split(stop)[0] if stop else text

    def _stream(self, model: Any, tok: Any, kwargs: dict, params: GenParams,
                on_first_token: Callable[[], None] | None) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteria, TextIteratorStreamer

        cancel = threading.Event()

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

        streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
        failure: list[BaseException] = []

        def run() -> None:  # holds the generation lock itself: its release never waits on the consumer
            try:
                with self._gen_lock, self._adapter_off(model, params), torch.inference_mode():
                    model.generate(**kwargs, streamer=streamer, stopping_criteria=[Cancelled()])
            except BaseException as exc:  # surfaced in the consumer's thread below
                failure.append(exc)
                streamer.end()

        thread = threading.Thread(target=run, name="assistant-generate", daemon=True)
        thread.start()
        try:
            first = True
            for piece in streamer:
                if first and on_first_token:
                    on_first_token()
                first = False
                if piece:
                    yield piece
        finally:
            cancel.set()  # the consumer stopped early: stop generating too
            thread.join()
        if failure:
            raise failure[0]


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]

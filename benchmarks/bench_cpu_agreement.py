"""How far an encoder's embeddings move between CPUs: this CPU against an emulated older one.

    python benchmarks/bench_cpu_agreement.py [ENCODER ...] [--cpu Haswell] [--reference FP32_DIR] [--n 24]

Why: dynamic int8 runs other integer kernels on a CPU without AVX512-VNNI (AVX2 multiplies
8-bit pairs into saturating 16-bit sums), so a model's scores can differ between the machine that
trained it and the one that serves it. This embeds the first ``--n`` test responses of the paper
split and four short texts ("Sure.", a short Chinese refusal, ...) with each encoder folder,
here and under ``qemu-x86_64 -cpu CPU`` (user-mode emulation, so slow: minutes per encoder),
and prints, per encoder, the cosine between the two runs' embeddings of each text (mean, min)
and the largest coordinate difference; with ``--reference`` (a float32 export of the same
model), also each run's cosine to that reference. Encoders default to the shipped
``all-MiniLM-L6-v2-int8``. Needs ``qemu-x86_64`` on the PATH (Debian: ``apt-get install
qemu-user``). The numbers are deterministic: one run each, no median.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(REPO))

from refusal_predictor.cli import at_least_one  # noqa: E402
from refusal_predictor.encoder import DEFAULT_ENCODER, OnnxEncoder  # noqa: E402
from refusal_predictor.features import resolve_encoder_path  # noqa: E402

SHORT = ["Sure.", "Certainly! Here's a short poem:", "对不起，我不能帮助你。", "I'm sorry, I can't help with that."]


def sample_texts(n: int) -> list[str]:
    from training.data import load_paper, paper_split

    _, _, test = paper_split(load_paper())
    return test["response"].tolist()[:n] + SHORT


def embed(folder: str, n: int, out: Path) -> None:
    """One thread, the folder as it is (a user's export need not carry matching sha256 sums)."""
    np.save(out, load(folder, num_threads=1).encode(sample_texts(n)))


def load(folder: str, **options) -> OnnxEncoder:
    """A folder, or a shipped encoder's name, as the classifiers' ``encoder`` takes it."""
    return OnnxEncoder.load(resolve_encoder_path(folder), verify=False, **options)


def emulated(folder: str, n: int, out: Path, cpu: str) -> None:
    command = ["qemu-x86_64", "-cpu", cpu, sys.executable, __file__, "--embed", folder, "--n", str(n), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not out.is_file():
        tail = [line for line in done.stderr.splitlines() if "TCG doesn't support" not in line][-3:]
        raise SystemExit(f"error: {folder} under qemu-x86_64 -cpu {cpu} failed (status {done.returncode}): {' | '.join(tail)}")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("encoders", nargs="*", default=[DEFAULT_ENCODER], help="encoder folders or shipped names")
    parser.add_argument("--cpu", default="Haswell", help="qemu CPU model to emulate (default: Haswell, AVX2 without VNNI)")
    parser.add_argument("--reference", help="float32 export of the same model, for each run's cosine to it")
    parser.add_argument("--n", type=at_least_one, default=24, help="paper test responses embedded (default 24), plus 4 short texts")
    parser.add_argument("--embed", help=argparse.SUPPRESS)  # the emulated child's job
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.embed:
        embed(args.embed, args.n, args.out)
        return 0
    for folder in args.encoders + ([args.reference] if args.reference else []):
        try:
            load(folder)
        except (OSError, ValueError) as exc:  # a mistyped folder: say so before minutes of emulation
            parser.error(f"{folder}: {exc}")
    if shutil.which("qemu-x86_64") is None:
        parser.error("qemu-x86_64 is not on the PATH (Debian: apt-get install qemu-user)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="cpu-agreement-") as tmp:
        reference = None
        if args.reference:
            embed(args.reference, args.n, Path(tmp) / "reference.npy")
            reference = np.load(Path(tmp) / "reference.npy")
        for i, folder in enumerate(args.encoders):
            native, other = Path(tmp) / f"{i}-native.npy", Path(tmp) / f"{i}-emulated.npy"
            embed(folder, args.n, native)
            emulated(folder, args.n, other, args.cpu)
            a, b = np.load(native), np.load(other)
            between = cosines(a, b)
            row = [folder, load(folder).manifest.get("quantization", "?"),
                   f"{between.mean():.4f}", f"{between.min():.4f}", f"{np.abs(a - b).max():.3f}"]
            if reference is not None:
                row += [f"{cosines(a, reference).mean():.4f}", f"{cosines(b, reference).mean():.4f}"]
            rows.append(row)
    header = ["encoder", "quantization", f"cos here vs {args.cpu}: mean", "min", "largest difference"]
    if reference is not None:
        header += ["cos to reference here", f"cos to reference on {args.cpu}"]
    print(f"\n{args.n} paper test responses + {len(SHORT)} short texts; this CPU against qemu -cpu {args.cpu}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

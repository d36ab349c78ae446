"""LightGBM prediction threads: one thread (the default for scoring) against all cores.

    python benchmarks/bench_threads.py [--runs 5] [--n 200] [--busy 1]

The shipped gpt-3.5-turbo PromptClassifier (LightGBM head) scores --n real prompts one call per
prompt, as a pre-filter in a request path does, with the head at ``n_jobs=1`` and at ``n_jobs=0``
(OpenMP's default: one thread per logical core). Each setting is timed on a quiet machine and
with --busy processes spinning on other work, because OpenMP threads spin-wait for each other and
a busy core stalls all of them. Prints prompts per second (median of --runs) and the ratio of
one thread to all threads measured in the same run. Only the head's thread count differs.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(REPO))

from benchmarks.common import first_n  # noqa: E402
from refusal_predictor.cli import at_least_one  # noqa: E402
from refusal_predictor import PromptClassifier  # noqa: E402
from training import data  # noqa: E402


def _spin(stop) -> None:
    x = 0
    while not stop.is_set():
        x = (x * 31 + 7) % 1_000_003


def prompts_per_second(model: PromptClassifier, prompts: list[str], runs: int) -> float:
    for p in prompts[:5]:  # warm-up
        model.predict_proba(p)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        for p in prompts:
            model.predict_proba(p)
        times.append(time.perf_counter() - start)
    return len(prompts) / statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=at_least_one, default=5, help="timed runs per row (median reported)")
    parser.add_argument("--n", type=at_least_one, default=200, help="prompts per run, scored one per call")
    parser.add_argument("--busy", type=at_least_one, default=1, help="spinning processes for the busy rows")
    args = parser.parse_args(argv)
    prompts = first_n(data.load_paper()["prompt"].tolist(), args.n, "prompts")
    model = PromptClassifier.load()
    heads = [c.estimator for c in model.model_.calibrated_classifiers_]
    print(f"prompts/s over the first {len(prompts)} of the paper's prompts, one per call, median of {args.runs} runs; "
          "ratios to all threads measured in the same run\n")
    print("| machine | head threads | prompts/s | x all threads |")
    print("|---|---|---|---|")
    for label, busy in (("quiet", 0), (f"{args.busy} busy process(es)", args.busy)):
        stop = mp.Event()
        workers = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(busy)]
        for w in workers:
            w.start()
        try:
            rates = {}
            for threads in (0, 1):
                for head in heads:
                    head.set_params(n_jobs=threads)
                rates[threads] = prompts_per_second(model, prompts, args.runs)
        finally:
            stop.set()
            for w in workers:
                w.join()
        for threads, name in ((0, "all (n_jobs=0)"), (1, "1 (default)")):
            print(f"| {label} | {name} | {rates[threads]:,.1f} | {rates[threads] / rates[0]:.2f} |")


if __name__ == "__main__":
    main()

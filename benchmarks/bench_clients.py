"""Memory and throughput of one loaded model shared by many threads (a threaded server's pool).

    python benchmarks/bench_clients.py [--runs 3] [--n 96] [--clients 1,4,16,32] [--kind response]

onnxruntime's memory arena grows to the most inferences that ever ran at once and keeps that
memory, so a server whose thread pool scores one model from 32 threads held far more than one
scoring from a single thread, long after the burst. The encoder caps its inferences at once (one
per CPU, or ``num_threads`` or ``concurrent_runs`` if larger). Each row here runs in a fresh
process: ``K`` threads share one shipped model and score the first ``--n`` texts of the paper's
data, one text per call, with the cap as shipped and, as the baseline in the same run, with no
effective cap (``concurrent_runs`` = K raises it to K: every thread runs at once, as before the cap). The table gives the
medians over ``--runs`` of the process's resident memory after the burst (MiB; after one warm-up
call it is the "1 client" row's) and of the texts scored per second, and the capped run's ratios
to the uncapped one.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(REPO))

from benchmarks.common import first_n  # noqa: E402
from refusal_predictor.cli import at_least_one  # noqa: E402

# One measurement, in a fresh interpreter so that no earlier row's arena is counted.
_CHILD = r"""
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
from refusal_predictor import PromptClassifier, ResponseClassifier
kind, clients, runs, texts = json.loads(sys.stdin.read())
model = ResponseClassifier.load() if kind == "response" else PromptClassifier.load()
if runs is not None:
    model.configure_encoder(concurrent_runs=runs)
model.predict_proba(texts[:1])
start = time.perf_counter()
with ThreadPoolExecutor(max_workers=clients) as pool:
    list(pool.map(lambda text: model.predict_proba([text]), texts))
wall = time.perf_counter() - start
rss = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS"))
print(json.dumps({"mib": rss / 1024, "per_s": len(texts) / wall}))
"""


def measure(kind: str, clients: int, runs: int | None, texts: list[str]) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps([kind, clients, runs, texts]),
                          capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"measurement failed ({kind}, {clients} clients):\n{done.stderr}")
    return json.loads(done.stdout)


def client_counts(text: str) -> list[int]:
    """``--clients``: comma-separated thread counts, each a whole number of at least 1 (at most 256)."""
    counts = [at_least_one(part.strip()) for part in text.split(",")]
    if max(counts) > 256:
        raise argparse.ArgumentTypeError(f"at most 256 threads, got {text!r}")
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=at_least_one, default=3, help="fresh processes per row (medians)")
    parser.add_argument("--n", type=at_least_one, default=96, help="texts scored per run")
    parser.add_argument("--clients", type=client_counts, default=[1, 4, 16, 32], help="threads sharing the model")
    parser.add_argument("--kind", choices=("response", "prompt"), default="response",
                        help="the shipped response model (512 tokens) or the default prompt model (256)")
    args = parser.parse_args(argv)
    if not Path("/proc/self/status").exists():
        parser.error("reads resident memory from /proc/self/status (Linux)")

    from training import data

    paper = data.load_paper()
    texts = first_n(paper[args.kind].tolist(), args.n, f"{args.kind}s")
    print(f"{args.kind}s: the first {len(texts)} of the paper's data, one per call; {os.cpu_count()} CPUs; "
          f"medians of {args.runs} fresh processes per row")
    print()
    print("| threads sharing one model | MiB after, capped (shipped) | MiB after, uncapped (baseline) | memory ratio "
          "| texts/s capped | texts/s uncapped | throughput ratio |")
    print("|---|---|---|---|---|---|---|")
    for clients in args.clients:
        capped, uncapped = [], []
        for _ in range(args.runs):  # alternated, so that a machine getting busier weighs on both alike
            capped.append(measure(args.kind, clients, None, texts))
            uncapped.append(measure(args.kind, clients, max(clients, os.cpu_count() or 1), texts))
        mib = [statistics.median(r["mib"] for r in rows) for rows in (capped, uncapped)]
        per_s = [statistics.median(r["per_s"] for r in rows) for rows in (capped, uncapped)]
        print(f"| {clients} | {mib[0]:,.0f} | {mib[1]:,.0f} | {mib[0] / mib[1]:.2f}x "
              f"| {per_s[0]:,.1f} | {per_s[1]:,.1f} | {per_s[0] / per_s[1]:.2f}x |", flush=True)


if __name__ == "__main__":
    main()

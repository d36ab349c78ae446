"""Per-call latency of the shipped classifiers as a pre-filter calls them: one text per call.

    python benchmarks/bench_latency.py [--runs 5] [--n 256] [--clients 2] [--threads N]
        [--providers CUDAExecutionProvider,CPUExecutionProvider]

A pre-filter in front of an LLM scores one prompt (or one response) per request, and what it
budgets for is the slow requests, not the mean: ``bench_scoring.py`` reports texts per second,
this script the distribution of single calls. Each run times every one of the first ``--n``
prompts and responses of the paper's data (file order) one call each; the table gives each
percentile's median over ``--runs`` runs (after a warm-up), in milliseconds, the calls per second
completed (median), and the p50's ratio to the keyword list's measured in the same run.
``--clients K`` adds rows where K threads share one loaded model and call it at once (a threaded
server): the latency each request then sees, and what all of them together get through.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchmarks.common import configure_encoders, figure, first_n, provider_list, token_lengths  # noqa: E402
from refusal_predictor import PromptClassifier, ResponseCascade, ResponseClassifier  # noqa: E402
from refusal_predictor.cli import at_least_one, thread_count  # noqa: E402
from refusal_predictor.keywords import KeywordRefusalDetector  # noqa: E402
from training import data  # noqa: E402

PERCENTILES = (50, 90, 99, 100)


def call_times(fn: Callable[[str], object], texts: Sequence[str], clients: int = 1) -> tuple[np.ndarray, float]:
    """Seconds each call of ``fn`` on one text took, and the seconds all of them took; with
    ``clients`` > 1 that many threads call it at once, each on its share of the texts, so every
    call waits as a busy server's would."""
    def timed(text: str) -> float:
        start = time.perf_counter()
        fn(text)
        return time.perf_counter() - start

    start = time.perf_counter()
    if clients == 1:
        calls = np.array([timed(t) for t in texts])
    else:
        with ThreadPoolExecutor(max_workers=clients) as pool:
            calls = np.array(list(pool.map(timed, texts)))
    return calls, time.perf_counter() - start


def latency_ms(fn: Callable[[str], object], texts: Sequence[str], runs: int,
               clients: int = 1) -> tuple[list[float], float]:
    """Each of :data:`PERCENTILES` of the per-call time in ms, and the calls per second all
    clients together completed: each the median over ``runs`` runs."""
    call_times(fn, texts[:8], clients)  # warm-up: the encoder sessions open and the caches fill
    per_run = [call_times(fn, texts, clients) for _ in range(runs)]
    percentiles = [np.percentile(calls, PERCENTILES) * 1000 for calls, _ in per_run]
    return ([statistics.median(run[i] for run in percentiles) for i in range(len(PERCENTILES))],
            statistics.median(len(texts) / wall for _, wall in per_run))


def scorers(kind: str, models: dict, cascade: ResponseCascade) -> list[tuple[str, Callable[[str], object]]]:
    """What a pre-filter of ``kind`` calls per request; the keyword list first (the baseline)."""
    rows: list[tuple[str, Callable[[str], object]]] = [("keywords (baseline)", KeywordRefusalDetector().predict_proba)]
    model = models[kind]
    rows.append(("shipped model, predict_proba", model.predict_proba))
    rows.append((f"shipped model, predict at a threshold ({model.threshold:g})", model.predict))
    if kind == "prompt":
        rows.append(("explain (top 10 n-grams)", model.explain))
    else:
        rows.append(('shipped n-gram variant, load("ngrams")', models["ngrams"].predict_proba))
        rows.append(("shipped cascade, ResponseCascade.load()", cascade.predict_proba))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=at_least_one, default=5, help="timed runs per row (median of each percentile)")
    parser.add_argument("--n", type=at_least_one, default=256, help="texts (so calls) per run")
    parser.add_argument("--clients", type=at_least_one, default=2,
                        help="also time the shipped models with this many threads calling one model at once "
                             "(1: no such rows)")
    parser.add_argument("--providers", type=provider_list, help="comma-separated onnxruntime providers for the encoders")
    parser.add_argument("--threads", type=thread_count, help="onnxruntime intra-op threads for the encoders")
    args = parser.parse_args(argv)
    paper = data.load_paper()
    sets = {"prompt": first_n(paper["prompt"].tolist(), args.n, "prompts"),
            "response": first_n(paper["response"].tolist(), args.n, "responses")}
    models = {"prompt": PromptClassifier.load(), "response": ResponseClassifier.load(),
              "ngrams": ResponseClassifier.load("ngrams")}
    cascade = ResponseCascade.load()
    configure_encoders(parser, [models["prompt"], models["response"], cascade], args.providers, args.threads)
    in_use = {kind: models[kind].features_.get_encoder().providers for kind in ("prompt", "response")}
    in_use["cascade"] = cascade.full.features_.get_encoder().providers
    print("encoder providers in use:", in_use)
    for kind, texts in sets.items():
        print(f"{kind}s: the first {len(texts)} of the paper's data, {token_lengths(models[kind], texts)}")
    header = " | ".join(f"p{p}" if p < 100 else "max" for p in PERCENTILES)
    print(f"\nms per call, one text per call; each percentile the median of {args.runs} runs after a warm-up; "
          f"p50 ratio to the keyword list's in the same run\n")
    print(f"| kind | scorer | clients | {header} | calls/s | p50 x keywords |")
    print("|---|---|---|" + "---|" * len(PERCENTILES) + "---|---|")
    for kind, texts in sets.items():
        rows = scorers(kind, models, cascade)
        timed = [(name, 1, latency_ms(fn, texts, args.runs)) for name, fn in rows]
        if args.clients > 1:
            timed.append(("shipped model, predict_proba", args.clients,
                          latency_ms(models[kind].predict_proba, texts, args.runs, args.clients)))
        base = timed[0][2][0][0]
        for name, clients, (values, rate) in timed:
            cells = " | ".join(figure(v) for v in values)
            print(f"| {kind} | {name} | {clients} | {cells} | {rate:,.0f} | {figure(values[0] / base)} |")


if __name__ == "__main__":
    main()

"""End-to-end scoring throughput of the shipped classifiers, with baselines from the same run.

    python benchmarks/bench_scoring.py [--runs 5] [--providers CUDAExecutionProvider,CPUExecutionProvider]

Prints texts per second (median of --runs timed runs after a warm-up) for the shipped
ResponseClassifier on real ChatGPT responses and the shipped PromptClassifier on real prompts, at
the default per-text embedding (batch 1, each score independent of its batch mates; on the CPU
several texts' inferences run at once, one thread each) and at that same path one inference at a
time (``concurrent_runs=1``: the speed before concurrent runs, measured in the same run), and at
encoder batch 64; the keyword baseline (llm-guard's NoRefusalLight phrases) and the n-gram part
alone are measured beside them (for responses also the paper's TF-IDF+LogReg and the shipped
n-gram-only variant, ``ResponseClassifier.load("ngrams")``), and each row gives its ratio to the
keyword baseline. ``--providers`` / ``--threads`` open the
classifiers' encoders as ``configure_encoder`` does (e.g. the CUDA provider with onnxruntime-gpu);
the line before the table says which providers the sessions really use.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(REPO))

from refusal_predictor import PromptClassifier, ResponseClassifier  # noqa: E402
from refusal_predictor.keywords import KeywordRefusalDetector  # noqa: E402
from training import data  # noqa: E402


def texts_per_second(fn: Callable[[Sequence[str]], object], texts: Sequence[str], runs: int) -> float:
    fn(texts[:8])  # warm-up: sessions, caches
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(texts)
        times.append(time.perf_counter() - start)
    return len(texts) / statistics.median(times)


def baseline_without_encoder() -> Callable[[Sequence[str]], object]:
    from training.baselines import paper_tfidf_logreg, refusal_y

    train, _, _ = data.paper_split()
    return paper_tfidf_logreg(train["response"].tolist(), refusal_y(train))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--n", type=int, default=128, help="texts per run")
    parser.add_argument("--providers", help="comma-separated onnxruntime providers for the encoders")
    parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads for the encoders")
    args = parser.parse_args()
    paper = data.load_paper()
    sets = {"response": paper["response"].tolist()[: args.n], "prompt": paper["prompt"].tolist()[: args.n]}
    models = {"response": ResponseClassifier.load(), "prompt": PromptClassifier.load()}
    providers = args.providers.split(",") if args.providers else None
    for model in models.values():
        model.configure_encoder(providers=providers, num_threads=args.threads)
    print("encoder providers in use:", {kind: m.features_.get_encoder().providers for kind, m in models.items()})
    keywords = KeywordRefusalDetector()
    print("| kind | scorer | texts/s | x keywords |")
    print("|---|---|---|---|")
    for kind, texts in sets.items():
        model = models[kind]
        base = texts_per_second(keywords.predict_proba, texts, args.runs)
        rows = [("keywords (baseline)", base)]
        ngrams = model.features_.vectorizer_
        rows.append(("n-gram TF-IDF transform only", texts_per_second(ngrams.transform, texts, args.runs)))
        if kind == "response":  # what a response model without the encoder costs
            rows.append(("paper TF-IDF+LogReg, no encoder (baseline)",
                         texts_per_second(baseline_without_encoder(), texts, args.runs)))
            rows.append(('shipped n-gram variant, load("ngrams")',
                         texts_per_second(ResponseClassifier.load("ngrams").predict_proba, texts, args.runs)))
        model.configure_encoder(providers=providers, num_threads=args.threads, concurrent_runs=1)
        rows.append(("shipped model, encoder batch 1, one run at a time (concurrent_runs=1)",
                     texts_per_second(model.predict_proba, texts, args.runs)))
        model.configure_encoder(providers=providers, num_threads=args.threads)
        rows.append(("shipped model, encoder batch 1 (default: concurrent runs on the CPU)",
                     texts_per_second(model.predict_proba, texts, args.runs)))
        model.features_.batch_size = 64
        rows.append(("shipped model, encoder batch 64", texts_per_second(model.predict_proba, texts, args.runs)))
        model.features_.batch_size = 1
        for name, rate in rows:
            print(f"| {kind} | {name} | {rate:,.1f} | {rate / base:.3f} |")


if __name__ == "__main__":
    main()

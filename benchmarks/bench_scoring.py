"""End-to-end scoring throughput of the shipped classifiers, with baselines from the same run.

    python benchmarks/bench_scoring.py [--runs 5] [--n 128] [--threads N] [--data-dir DATA]
        [--providers CUDAExecutionProvider,CPUExecutionProvider]

Prints texts per second (median of --runs timed runs after a warm-up) for the shipped
ResponseClassifier on real ChatGPT responses and the shipped PromptClassifier on real prompts, at
the default per-text embedding (batch 1, each score independent of its batch mates; on the CPU
several texts' inferences run at once, one thread each) and at that same path one inference at a
time (``concurrent_runs=1``: the speed before concurrent runs, measured in the same run), and at
encoder batch 64; the keyword baseline (llm-guard's NoRefusalLight phrases) and the n-gram part
alone are measured beside them (for responses also the paper's TF-IDF+LogReg and the shipped
n-gram-only variant, ``ResponseClassifier.load("ngrams")``; for prompts also one prompt per
call, and ``explain`` one prompt per call, with its ratio to that call), and each row gives its
ratio to the keyword baseline. The texts are the first ``--n`` of the paper's data in file order
(the title says how many, and how long in encoder tokens). ``--providers`` / ``--threads`` open the
classifiers' encoders as ``configure_encoder`` does (e.g. the CUDA provider with onnxruntime-gpu);
the line before the table says which providers the sessions really use. The shipped cascade
(:class:`refusal_predictor.ResponseCascade`: the n-gram variant, and the shipped model only where
it is unsure) is timed on the paper's responses and, with ``--data-dir DATA``, beside the shipped
model on ``--n`` responses of the unlabelled logs, the texts its band was chosen on.
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

from refusal_predictor import PromptClassifier, ResponseCascade, ResponseClassifier  # noqa: E402
from benchmarks.common import configure_encoders, first_n, provider_list, token_lengths  # noqa: E402
from refusal_predictor.cli import at_least_one, thread_count  # noqa: E402
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


def one_per_call(fn: Callable[[str], object]) -> Callable[[Sequence[str]], object]:
    """A pre-filter's way: each text in a call of its own."""
    def run(texts: Sequence[str]) -> None:
        for text in texts:
            fn(text)
    return run


def cascade_row(cascade: ResponseCascade, texts: Sequence[str], runs: int) -> tuple[str, float]:
    """The shipped cascade's rate, named with the share of these texts its encoder reads."""
    share = float(cascade.unsure(texts).mean())
    return (f"shipped cascade, ResponseCascade.load() ({share:.0%} of these to the encoder)",
            texts_per_second(cascade.predict_proba, texts, runs))


def ratio(value: float) -> str:
    """Three significant figures, however small (0.000807, not 0.001)."""
    return f"{value:.3g}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=at_least_one, default=5, help="timed runs per row (median reported)")
    parser.add_argument("--n", type=at_least_one, default=128, help="texts per run")
    parser.add_argument("--providers", type=provider_list, help="comma-separated onnxruntime providers for the encoders")
    parser.add_argument("--threads", type=thread_count, help="onnxruntime intra-op threads for the encoders")
    parser.add_argument("--data-dir", type=Path,
                        help="the shared data folder: also time the cascade and the shipped model on --n logged "
                             "responses of the unlabelled logs (training.cascade_band's sample)")
    args = parser.parse_args(argv)
    paper = data.load_paper()
    sets = {"response": first_n(paper["response"].tolist(), args.n, "responses"),
            "prompt": first_n(paper["prompt"].tolist(), args.n, "prompts")}
    if args.data_dir is not None:
        from training.cascade_band import unlabelled_sample

        sets["logged response"] = unlabelled_sample(args.data_dir, args.n)["response"].tolist()
    models = {"response": ResponseClassifier.load(), "prompt": PromptClassifier.load()}
    cascade = ResponseCascade.load()
    providers = args.providers
    configure_encoders(parser, [*models.values(), cascade], providers, args.threads)
    models["logged response"] = models["response"]  # after configuring: the same model, configured once
    print("encoder providers in use:", {kind: m.features_.get_encoder().providers for kind, m in models.items()})
    for kind, texts in sets.items():
        where = (f"{len(texts)} of the unlabelled logs (training.cascade_band's sample)" if kind == "logged response"
                 else f"the first {len(texts)} of the paper's data")
        print(f"{kind}s: {where}, {token_lengths(models[kind], texts)}")
    keywords = KeywordRefusalDetector()
    print(f"\ntexts/s, median of {args.runs} runs after a warm-up; ratios to the keyword list measured in the same run\n")
    print("| kind | scorer | texts/s | x keywords |")
    print("|---|---|---|---|")
    for kind, texts in sets.items():
        model = models[kind]
        base = texts_per_second(keywords.predict_proba, texts, args.runs)
        rows = [("keywords (baseline)", base)]
        if kind == "logged response":  # the cascade against what it saves: the shipped model's time
            rows.append(("shipped model (default)", texts_per_second(model.predict_proba, texts, args.runs)))
            rows.append(cascade_row(cascade, texts, args.runs))
            for name, rate in rows:
                print(f"| {kind} | {name} | {rate:,.1f} | {ratio(rate / base)} |")
            continue
        ngrams = model.features_.vectorizer_
        rows.append(("n-gram TF-IDF transform only", texts_per_second(ngrams.transform, texts, args.runs)))
        if kind == "response":  # what a response model without the encoder costs
            rows.append(("paper TF-IDF+LogReg, no encoder (baseline)",
                         texts_per_second(baseline_without_encoder(), texts, args.runs)))
            rows.append(('shipped n-gram variant, load("ngrams")',
                         texts_per_second(ResponseClassifier.load("ngrams").predict_proba, texts, args.runs)))
            rows.append(cascade_row(cascade, texts, args.runs))
        model.configure_encoder(providers=providers, num_threads=args.threads, concurrent_runs=1)
        rows.append(("shipped model, encoder batch 1, one run at a time (concurrent_runs=1)",
                     texts_per_second(model.predict_proba, texts, args.runs)))
        model.configure_encoder(providers=providers, num_threads=args.threads)
        rows.append(("shipped model, encoder batch 1 (default: concurrent runs on the CPU)",
                     texts_per_second(model.predict_proba, texts, args.runs)))
        model.features_.batch_size = 64
        rows.append(("shipped model, encoder batch 64", texts_per_second(model.predict_proba, texts, args.runs)))
        model.features_.batch_size = 1
        if kind == "prompt":  # a pre-filter scores, and may explain, one prompt per call
            single = texts_per_second(one_per_call(model.predict_proba), texts, args.runs)
            rows.append(("shipped model, one prompt per call", single))
            explained = texts_per_second(one_per_call(model.explain), texts, args.runs)
            rows.append((f"explain, one prompt per call ({single / explained:.2f}x the time of a one-prompt call)",
                         explained))
        for name, rate in rows:
            print(f"| {kind} | {name} | {rate:,.1f} | {ratio(rate / base)} |")


if __name__ == "__main__":
    main()

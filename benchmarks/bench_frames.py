"""Scoring a table in this process against scoring it on a local Dask cluster, in one run.

    python benchmarks/bench_frames.py [--runs 5] [--n 2000] [--partitions 8]

Prints rows per second (median of --runs timed runs after a warm-up; the model is loaded on every
worker first) for :func:`refusal_predictor.frames.score_frame` on a pandas DataFrame (the
baseline) and :func:`refusal_predictor.frames.score_dask` on the same rows as a Dask DataFrame of
--partitions partitions, on a ``distributed.LocalCluster`` of one worker process per CPU (one
thread each, the encoder at one thread per inference) and of one process with a thread per CPU,
each row with its ratio to the baseline. Two scorers: the shipped gpt-3.5-turbo prompt model (an
encoder per prompt) and the shipped ``ngrams`` response variant (no encoder), over the paper's
prompts and responses repeated to --n rows. Every run's output, timed or not, is checked equal
to the baseline's, so a fast row is never a wrong one.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from refusal_predictor.cli import at_least_one  # noqa: E402
from refusal_predictor.frames import load_scorer, score_dask, score_frame  # noqa: E402
from refusal_predictor.metrics import format_table  # noqa: E402
from training import data  # noqa: E402

SCORERS = (("prompt", None, "prompts, shipped gpt-3.5-turbo model"),
           ("response", "ngrams", "responses, shipped ngrams variant"))


def median_seconds(run: Callable[[], pd.DataFrame], runs: int, check: Callable[[pd.DataFrame], None]) -> float:
    """Median wall time of ``runs`` calls after a warm-up, each call's table checked."""
    check(run())  # warm-up: models loaded, sessions opened
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        table = run()
        times.append(time.perf_counter() - start)
        check(table)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=at_least_one, default=5)
    parser.add_argument("--n", type=at_least_one, default=2000, help="rows scored per run")
    parser.add_argument("--partitions", type=at_least_one, default=8)
    args = parser.parse_args(argv)
    try:
        import dask.dataframe as dd
        import distributed
    except ImportError as exc:
        parser.error(f"needs the [dask] extra (pip install 'refusal-predictor[dask]'): {exc}")

    paper = data.load_paper()
    rows = paper[["prompt", "response"]].iloc[np.arange(args.n) % len(paper)].reset_index(drop=True)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    table = []
    with tempfile.TemporaryDirectory(prefix="bench-frames-") as scratch:
        # (row name, worker processes, threads per worker, encoder threads per inference)
        clusters = ((f"Dask, {cpus} worker processes x 1 thread", cpus, 1, 1),
                    (f"Dask, 1 worker process x {cpus} threads", 1, cpus, None))
        for kind, model, title in SCORERS:
            expected = score_frame(rows, kind, model)

            def same_as_baseline(table: pd.DataFrame, where: str = "pandas") -> None:
                table = table.loc[expected.index]
                if not np.allclose(table["refusal_probability"].to_numpy(), expected["refusal_probability"].to_numpy(),
                                   rtol=0, atol=1e-6) or table["label"].tolist() != expected["label"].tolist():
                    raise SystemExit(f"{where} scored {title} differently from the baseline")

            base = median_seconds(lambda: score_frame(rows, kind, model), args.runs, same_as_baseline)
            table.append({"rows": title, "scorer": "pandas, this process (baseline)", "rows/s": f"{args.n / base:,.1f}",
                          "x baseline": "1"})
            for name, workers, threads, encoder_threads in clusters:
                with distributed.LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                                              host="127.0.0.1", dashboard_address=None,
                                              local_directory=scratch) as cluster, distributed.Client(cluster) as client:
                    client.run(load_scorer, kind, model, encoder_threads)  # every worker, whatever the partitions
                    frame = dd.from_pandas(rows, npartitions=args.partitions)
                    seconds = median_seconds(lambda: score_dask(frame, kind, model, num_threads=encoder_threads).compute(),
                                             args.runs, lambda got: same_as_baseline(got, name))
                table.append({"rows": title, "scorer": name, "rows/s": f"{args.n / seconds:,.1f}",
                              "x baseline": f"{base / seconds:.2f}"})
    print(format_table(table, ["rows", "scorer", "rows/s", "x baseline"],
                       title=f"Scoring {args.n} rows as a table: median of {args.runs} runs, {args.partitions} "
                             f"Dask partitions, {cpus} CPUs"))


if __name__ == "__main__":
    main()

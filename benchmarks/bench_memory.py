"""Peak memory and time of the batch commands on a large synthetic log, against a plain scoring run.

    python benchmarks/bench_memory.py [--n 1000000] [--runs 3] [--workdir DIR]

Writes a JSON Lines log of ``--n`` short records (``{"id": i, "prompt": ..., "response": ...}``,
a third of them refusals), then runs each command below ``--runs`` times in a fresh process
(``python -m refusal_predictor.cli ... --no-progress --threads 1`` with the ``ngrams`` response
model, so the encoder's own memory does not hide the log's) and prints the median peak resident
memory (the child's ``ru_maxrss``, in MiB) and wall time, each with its ratio to the baseline, plain
``label-responses`` of the same log measured in the same run:

- ``label-responses`` (the baseline);
- ``label-responses --text-field nope``: every record skipped into the errors file;
- ``bootstrap`` to JSON Lines and to Parquet (rows written as they are labelled);
- ``bootstrap --dedupe`` (every row held, to merge them).

Memory that grows with the log shows as a ratio that grows with ``--n``: run it at two sizes.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(REPO))

from benchmarks.common import figure  # noqa: E402
from refusal_predictor.cli import at_least_one  # noqa: E402

REFUSAL = "I'm sorry, but I can't help with that request."
ANSWER = "Sure! Here is a short answer to your question, with an example."


def write_log(path: Path, n: int) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(n):
            handle.write(json.dumps({"id": i, "prompt": f"question number {i % (n // 2 + 1)}",
                                     "response": f"{REFUSAL if i % 3 == 0 else ANSWER} #{i}"}) + "\n")


def commands(log: Path, out: Path) -> list[tuple[str, list[str], int]]:
    """(row name, command line, the exit status that says it did its work: 1 is "nothing scored")."""
    common = ["--no-progress", "--threads", "1"]
    return [
        ("label-responses (baseline)", ["label-responses", str(log), "-o", str(out / "labelled.jsonl"),
                                        "--model", "ngrams", *common], 0),
        ("label-responses, every record skipped", ["label-responses", str(log), "-o", str(out / "skipped.jsonl"),
                                                   "--model", "ngrams", "--text-field", "nope", *common], 1),
        ("bootstrap -> jsonl", ["bootstrap", str(log), "-o", str(out / "labels.jsonl"), "--response-model", "ngrams",
                                *common], 0),
        ("bootstrap -> parquet", ["bootstrap", str(log), "-o", str(out / "labels.parquet"), "--response-model", "ngrams",
                                  *common], 0),
        ("bootstrap --dedupe", ["bootstrap", str(log), "-o", str(out / "dedupe.jsonl"), "--response-model", "ngrams",
                                "--dedupe", *common], 0),
    ]


def measure(argv: list[str], expected_status: int = 0) -> tuple[float, float]:
    """Peak resident memory (MiB) and wall seconds of one run in a fresh process; any other exit
    status than ``expected_status`` stops the benchmark (a failed run's row would look like a fast one)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryFile() as stderr:  # a file, not a pipe: a chatty child cannot fill it and stall
        start = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "refusal_predictor.cli", *argv], env=env,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != expected_status:
            stderr.seek(0)
            said = stderr.read().decode("utf-8", "replace").strip()[-500:]
            raise SystemExit(f"{argv[0]} exited with status {process.returncode}, not {expected_status}: {said}")
    # ru_maxrss: kilobytes on Linux, bytes on macOS.
    return usage.ru_maxrss / (1 << 20 if sys.platform == "darwin" else 1 << 10), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=at_least_one, default=1_000_000, help="records in the log (default 1,000,000)")
    parser.add_argument("--runs", type=at_least_one, default=3, help="runs per command; the median is printed")
    parser.add_argument("--workdir", help="folder for the log and outputs (default: a temporary folder, removed)")
    args = parser.parse_args(argv)
    if not hasattr(os, "wait4"):
        parser.error("needs os.wait4 (Linux or macOS) to read a child's peak memory")
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        work = Path(folder)
        log = work / "log.jsonl"
        write_log(log, args.n)
        rows = []
        for name, command, status in commands(log, work):
            runs = [measure(command, status) for _ in range(args.runs)]
            rows.append((name, statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)))
        size = log.stat().st_size / 1e6
    base_mb, base_s = rows[0][1], rows[0][2]
    print(f"{args.n:,} records ({size:.0f} MB of JSON Lines), median of {args.runs} runs, ngrams model, 1 thread")
    print("| command | peak RSS MiB | x baseline | wall s | x baseline |\n|---|---|---|---|---|")
    for name, mb, seconds in rows:
        print(f"| {name} | {figure(mb)} | {mb / base_mb:.2f} | {figure(seconds)} | {seconds / base_s:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The benchmark scripts run, refuse mistyped options at once, and say what they measured.

No timing is asserted here (speed claims live in the scripts' own tables): these tests keep the
scripts from rotting, and from printing a plausible table of something other than their label.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import onnxruntime as ort
import pytest

from benchmarks import (bench_clients, bench_cpu_agreement, bench_encoder, bench_frames, bench_gpu, bench_latency,
                        bench_memory, bench_scoring, bench_threads)
from benchmarks.common import first_n
from refusal_predictor.encoder import OnnxEncoder


@pytest.mark.parametrize("script, argv", [
    (bench_scoring, ["--runs", "0"]),
    (bench_scoring, ["--n", "-1"]),  # was a slice: 1,705 texts timed under --n -1
    (bench_scoring, ["--threads", "0"]),
    (bench_threads, ["--n", "0"]),
    (bench_threads, ["--busy", "-2"]),
    (bench_encoder, ["--runs", "-3"]),
    (bench_gpu, ["--runs", "0"]),
    (bench_cpu_agreement, ["--n", "0"]),
    (bench_latency, ["--clients", "0"]),
    (bench_latency, ["--runs", "0"]),
    (bench_memory, ["--n", "0"]),
    (bench_memory, ["--runs", "0"]),
    (bench_clients, ["--runs", "0"]),
    (bench_clients, ["--clients", "1,0"]),
    (bench_frames, ["--partitions", "0"]),
    (bench_frames, ["--runs", "0"]),
])
def test_options_below_one_are_refused_with_one_line(script, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script.main(argv)
    assert exit_info.value.code == 2
    assert "expected a whole number of at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("script", [bench_scoring, bench_latency])
@pytest.mark.parametrize("providers, said", [("NoSuchExecutionProvider", "NoSuchExecutionProvider"),
                                             ("", "provider names"), ("CPUExecutionProvider,", "provider names")])
def test_a_bad_provider_list_is_an_option_error_before_anything_loads(script, providers, said, capsys, monkeypatch):
    # An empty --providers was the default without a word, and an unknown name was caught only after
    # the data and four models had loaded.
    monkeypatch.setattr(script.data, "load_paper", lambda: pytest.fail("loaded the data before checking --providers"))
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--runs", "1", "--n", "1", "--providers", providers])
    assert exit_info.value.code == 2 and said in capsys.readouterr().err


def test_bench_gpu_names_a_missing_encoder_folder_before_anything_else(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_gpu.main([str(tmp_path / "no-encoder"), "--require-cuda"])
    assert exit_info.value.code == 2 and "no-encoder" in capsys.readouterr().err


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="a CUDA build of onnxruntime")
def test_bench_gpu_without_cuda_claims_no_gpu_numbers(capsys):
    assert bench_gpu.main(["--require-cuda"]) == 2
    assert bench_gpu.main([]) == 0
    out = capsys.readouterr().out
    assert "no CUDA provider" in out and "| short |" not in out


def test_long_texts_are_real_responses_and_the_title_says_how_long():
    texts = bench_encoder.sample_texts()
    from training import data

    responses = set(data.load_paper()["response"])
    assert len(texts["long"]) == 128 and set(texts["long"]) <= responses  # not a filler paragraph
    line = bench_encoder.describe(OnnxEncoder.load(), texts)
    assert "long: 128 texts of 212-526 tokens" in line and "read up to 256" in line


def test_an_n_beyond_the_data_says_how_many_are_measured(capsys):
    assert first_n(["a", "b"], 5, "prompts") == ["a", "b"]
    assert "measuring all 2" in capsys.readouterr().out


def test_bench_scoring_prints_every_row_with_a_readable_ratio(capsys):
    bench_scoring.main(["--runs", "1", "--n", "2"])
    out = capsys.readouterr().out
    assert "responses: the first 2 of the paper's data" in out and "median of 1 runs" in out
    rows = [line for line in out.splitlines() if line.startswith("| response |") or line.startswith("| prompt |")]
    assert len(rows) == 15
    assert any("explain, one prompt per call (" in row for row in rows)
    assert any("shipped cascade, ResponseCascade.load() (" in row and "% of these to the encoder)" in row for row in rows)
    ratios = [row.rstrip(" |").rsplit("| ", 1)[1] for row in rows]
    assert all(float(r) > 0 for r in ratios)  # three significant figures: no row rounds to 0.000


def test_bench_latency_prints_percentiles_per_call_for_every_scorer(capsys):
    bench_latency.main(["--runs", "1", "--n", "3", "--clients", "2"])
    out = capsys.readouterr().out
    assert "prompts: the first 3 of the paper's data" in out and "the median of 1 runs" in out
    rows = [line.strip("| ").split(" | ") for line in out.splitlines() if line.startswith(("| prompt |", "| response |"))]
    assert [(kind, clients) for kind, _, clients, *_ in rows].count(("prompt", "2")) == 1
    assert len(rows) == 11 and {r[1] for r in rows} >= {"keywords (baseline)", "explain (top 10 n-grams)",
                                                        "shipped cascade, ResponseCascade.load()"}
    figures = [[float(cell.replace(",", "")) for cell in row[3:9]] for row in rows]
    assert not any("e+" in cell or "e-" in cell for row in rows for cell in row[3:9])  # 2,090 as the README quotes it
    for p50, p90, p99, slowest, rate, ratio in figures:
        assert 0 < p50 <= p90 <= p99 <= slowest  # percentiles in order: not a column mixed up
        assert rate > 0 and ratio > 0
    assert [f[5] for r, f in zip(rows, figures) if r[1] == "keywords (baseline)"] == [1.0, 1.0]
    for kind in ("prompt", "response"):  # each ratio is the row's p50 over its kind's keyword p50, not the inverse
        base = next(f[0] for r, f in zip(rows, figures) if r[0] == kind and r[1] == "keywords (baseline)")
        for r, f in zip(rows, figures):
            if r[0] == kind:
                assert f[5] == pytest.approx(f[0] / base, rel=0.02)


@pytest.mark.parametrize("script", [bench_latency, bench_scoring])
def test_a_thread_count_onnxruntime_cannot_take_is_refused_before_loading(script, capsys):
    with pytest.raises(SystemExit) as exit_info:  # 99999 spawned threads for minutes; 99999999999 was a traceback
        script.main(["--threads", "99999"])
    assert exit_info.value.code == 2 and "at most 4096" in capsys.readouterr().err


def test_bench_latency_times_one_text_per_call_in_ms_after_a_warm_up(monkeypatch):
    seen, active, peak = [], [0], [0]
    lock = threading.Lock()

    def fn(text):
        with lock:
            seen.append(text)
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.01)
        with lock:
            active[0] -= 1

    texts = [f"t{i}" for i in range(20)]
    values, rate = bench_latency.latency_ms(fn, texts, runs=3, clients=1)
    assert seen == texts[:8] + texts * 3 and peak[0] == 1  # one text per call; warm-up of 8, then 3 runs
    assert values[0] >= 9 and 0 < rate <= 100  # milliseconds, not seconds (each call sleeps 10 ms)
    seen.clear()
    peak[0] = 0
    bench_latency.latency_ms(fn, texts, runs=1, clients=3)
    assert peak[0] == 3 and sorted(seen) == sorted(texts[:8] + texts)  # K threads really call at once

    # each percentile (and calls/s) is the median over the runs; the warm-up's times are not among them
    rng = np.random.default_rng(0)
    runs = [rng.exponential(1.0, 50) for _ in range(5)]
    walls = [1.0, 2.0, 3.0, 4.0, 10.0]
    canned = iter([(np.full(8, 1e6), 1e6)] + list(zip(runs, walls)))
    monkeypatch.setattr(bench_latency, "call_times", lambda fn, texts, clients=1: next(canned))
    values, rate = bench_latency.latency_ms(None, ["t"] * 50, runs=5)
    expected = np.median([np.percentile(r, bench_latency.PERCENTILES) for r in runs], axis=0) * 1000
    assert values == pytest.approx(expected) and rate == pytest.approx(50 / 3.0)


def test_bench_cpu_agreement_checks_folders_and_qemu_before_emulating(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_cpu_agreement.main([str(tmp_path / "no-encoder")])
    assert exit_info.value.code == 2 and "no-encoder" in capsys.readouterr().err
    monkeypatch.setattr(bench_cpu_agreement.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit) as exit_info:
        bench_cpu_agreement.main([])
    assert exit_info.value.code == 2 and "apt-get install qemu-user" in capsys.readouterr().err


def test_bench_cpu_agreement_child_embeds_the_texts_it_compares(tmp_path):
    out = tmp_path / "emb.npy"
    assert bench_cpu_agreement.main(["--embed", "all-MiniLM-L6-v2-int8", "--n", "3", "--out", str(out)]) == 0
    import numpy as np

    embeddings = np.load(out)
    assert embeddings.shape == (3 + len(bench_cpu_agreement.SHORT), 384)
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-4)
    assert np.array_equal(embeddings, OnnxEncoder.load(num_threads=1).encode(bench_cpu_agreement.sample_texts(3)))


def test_bench_scoring_times_the_cascade_on_logged_responses(data_dir, capsys):
    bench_scoring.main(["--runs", "1", "--n", "3", "--data-dir", str(data_dir)])
    out = capsys.readouterr().out
    assert "logged responses: 3 of the unlabelled logs" in out
    rows = [line for line in out.splitlines() if line.startswith("| logged response |")]
    assert [row.split(" | ")[1].split(" (")[0] for row in rows] == [
        "keywords", "shipped model", "shipped cascade, ResponseCascade.load()"]


def test_bench_memory_runs_every_command_and_reads_the_childs_peak(tmp_path, capsys):
    """A command that fails is an error naming it, not a row of a dead process's memory."""
    assert bench_memory.main(["--n", "300", "--runs", "1", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert "peak RSS MiB" in out and [r[0].lstrip("| ") for r in rows] == ["label-responses (baseline)", "label-responses, every record skipped",
                                                 "bootstrap -> jsonl", "bootstrap -> parquet", "bootstrap --dedupe"]
    assert rows[0][2] == "1.00" and all(50 < float(r[1].replace(",", "")) < 5000 for r in rows)
    assert list(tmp_path.iterdir()) == []  # the log and the outputs are removed
    with pytest.raises(SystemExit, match="label-responses exited with status 2, not 0"):
        bench_memory.measure(["label-responses", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "o.jsonl")])
    # Status 1 ("nothing usable") is a failure where the run was meant to do its work.
    log = tmp_path / "no_response.jsonl"
    log.write_text('{"prompt": "p"}\n', encoding="utf-8")
    with pytest.raises(SystemExit, match="bootstrap exited with status 1, not 0"):
        bench_memory.measure(["bootstrap", str(log), "-o", str(tmp_path / "x.jsonl"), "--response-model", "ngrams"])


def test_bench_clients_measures_each_row_in_fresh_processes_against_an_uncapped_baseline(capsys):
    bench_clients.main(["--runs", "1", "--n", "4", "--clients", "1,3", "--kind", "prompt"])
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [row[0].strip() for row in rows[1:]] == ["1", "3"]
    for row in rows[1:]:
        capped, uncapped = (float(cell.replace(",", "")) for cell in row[1:3])
        assert 100 < capped < 4000 and 100 < uncapped < 4000  # MiB of a process that loaded the prompt model
        assert row[3].strip().endswith("x") and row[6].strip().endswith("x")


def test_bench_frames_prints_the_pandas_baseline_and_both_clusters_for_each_scorer(capsys):
    pytest.importorskip("distributed")
    bench_frames.main(["--runs", "1", "--n", "24", "--partitions", "3"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("prompts,", "responses,"))]
    assert "Scoring 24 rows as a table: median of 1 runs, 3 Dask partitions" in out
    assert [row.split("  ")[0] for row in rows] == ["prompts, shipped gpt-3.5-turbo model"] * 3 + \
        ["responses, shipped ngrams variant"] * 3
    assert sum("(baseline)" in row for row in rows) == 2 and sum("worker processes x 1 thread" in row for row in rows) == 2
    assert all(float(row.split()[-2].replace(",", "")) > 0 for row in rows)  # rows/s


def test_bench_frames_stops_on_a_warm_up_run_that_differs_from_the_baseline_in_labels_alone(monkeypatch):
    """An unchecked warm-up, or labels left out of the comparison, passed: labels swapped, same probabilities."""
    pytest.importorskip("distributed")
    real, calls = bench_frames.score_frame, []

    def labels_swapped_on_the_warm_up(*args, **kwargs):
        table = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # call 1 is the expected table, call 2 the baseline's warm-up
            table["label"] = table["label"].replace({"refusal": "compliance", "compliance": "refusal"})
        return table

    monkeypatch.setattr(bench_frames, "score_frame", labels_swapped_on_the_warm_up)
    with pytest.raises(SystemExit, match="pandas scored prompts, shipped gpt-3.5-turbo model differently"):
        bench_frames.main(["--runs", "1", "--n", "24", "--partitions", "3"])


def test_bench_frames_loads_every_worker_first_times_n_rows_and_divides_the_right_way(capsys, monkeypatch):
    """No pre-load on the workers, --n off by one, or an inverted ratio passed."""
    distributed = pytest.importorskip("distributed")
    sizes, runs = [], []
    real_frame, real_run = bench_frames.score_frame, distributed.Client.run

    def sized(rows, *args, **kwargs):
        sizes.append(len(rows))
        return real_frame(rows, *args, **kwargs)

    def run(self, function, *args, **kwargs):
        runs.append((function, args))
        return real_run(self, function, *args, **kwargs)

    monkeypatch.setattr(bench_frames, "score_frame", sized)
    monkeypatch.setattr(distributed.Client, "run", run)
    bench_frames.main(["--runs", "1", "--n", "24", "--partitions", "3"])
    assert sizes and set(sizes) == {24}
    load = bench_frames.load_scorer
    assert runs == [(load, ("prompt", None, 1)), (load, ("prompt", None, None)),
                    (load, ("response", "ngrams", 1)), (load, ("response", "ngrams", None))]
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith(("prompts,", "responses,"))]
    for group in (rows[:3], rows[3:]):
        base = float(group[0][-2].replace(",", ""))
        assert group[0][-1] == "1"
        for row in group[1:]:
            rate, ratio = float(row[-2].replace(",", "")), float(row[-1])
            assert ratio == pytest.approx(rate / base, rel=0.02, abs=0.01)

"""The benchmark scripts run, refuse mistyped options at once, and say what they measured.

No timing is asserted here (speed claims live in the scripts' own tables): these tests keep the
scripts from rotting, and from printing a plausible table of something other than their label.
"""
from __future__ import annotations

import onnxruntime as ort
import pytest

from benchmarks import bench_cpu_agreement, bench_encoder, bench_gpu, bench_latency, bench_scoring, bench_threads
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
])
def test_options_below_one_are_refused_with_one_line(script, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script.main(argv)
    assert exit_info.value.code == 2
    assert "expected a whole number of at least 1" in capsys.readouterr().err


def test_an_unknown_provider_is_an_option_error_not_a_traceback(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_scoring.main(["--runs", "1", "--n", "1", "--providers", "NoSuchExecutionProvider"])
    assert exit_info.value.code == 2 and "NoSuchExecutionProvider" in capsys.readouterr().err


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
    for row in rows:
        p50, p90, p99, slowest = map(float, row[3:7])
        assert 0 < p50 <= p90 <= p99 <= slowest  # percentiles in order: not a column mixed up
        assert float(row[7].replace(",", "")) > 0 and float(row[8]) > 0
    assert [float(r[8]) for r in rows if r[1] == "keywords (baseline)"] == [1.0, 1.0]


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

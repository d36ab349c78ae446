"""The recipes (classifier parameters) that training and evaluation share, in one place.

``training.train_response --select`` compares the candidates by grouped cross-validation on the
training pool; the evaluation report retrains the chosen recipe for leave-one-model-out, so what
is measured is what ships.
"""
from __future__ import annotations

from typing import Any

from refusal_predictor import PromptClassifier, ResponseClassifier

BASE_ENCODER = "all-MiniLM-L6-v2-int8"
# all-MiniLM-L6-v2 fine-tuned end to end on the response pool at 512 tokens
# (``python -m training.finetune_encoder --protocols sweep,final``, configuration chosen on the
# paper's validation split), exported by ``training.export_encoder``.
REFUSAL_ENCODER = ResponseClassifier.default_encoder  # "minilm-refusal-int8"

RESPONSE_CANDIDATES: dict[str, dict[str, Any]] = {
    "ngrams-logreg": {"head": "logreg", "C": 10.0, "use_embeddings": False},
    "ngrams+minilm-logreg": {"head": "logreg", "C": 10.0, "encoder": BASE_ENCODER},
    "ngrams+minilm-lightgbm": {"head": "lightgbm", "encoder": BASE_ENCODER},
}
# Recipes whose encoder was fine-tuned on the whole response pool. Cross-validation on that pool
# cannot judge them (every fold's embeddings saw its test rows), so they are compared by XSTest
# leave-one-model-out with one fine-tuned encoder per held-out model instead
# (``training.finetune_encoder --protocols lomo --lomo-embeddings DIR`` on a GPU, then
# ``training.evaluate --lomo-embeddings DIR``).
FINETUNED_RESPONSE_CANDIDATES: dict[str, dict[str, Any]] = {
    "ngrams+minilm-refusal-logreg": {"head": "logreg", "C": 10.0, "encoder": REFUSAL_ENCODER},
}
ALL_RESPONSE_RECIPES = {**RESPONSE_CANDIDATES, **FINETUNED_RESPONSE_CANDIDATES}
# n-grams + the fine-tuned encoder: XSTest leave-one-model-out mean F1 0.919 -> 0.945, min
# 0.748 -> 0.854 against the best cross-validated frozen recipe (n-grams alone), paper test split
# unchanged (0.9062); with the truncated openings below (both recipes): 0.912 -> 0.943, min
# 0.730 -> 0.841, paper test 0.9219; see the closing notes of issue 2.
RESPONSE_RECIPE_NAME = "ngrams+minilm-refusal-logreg"
# Weight of the truncated-response rows (training/augment.py) in the response recipe. Chosen by a
# one-off script on an earlier version of the openings (no unanimity rule, keyword list instead
# of REFUSAL_CUES), shipped encoder's embeddings, shipped recipe otherwise (refusal rate among
# keyword-free AlpacaEval answers under 80 characters; XSTest leave-one-model-out mean F1): no
# openings 0.159 / 0.9452; compliance openings only, weight 0.3: 0.007 / 0.9431; compliance and
# refusal openings, weight 0.3: 0.019 / 0.9445, weight 1.0: 0.010 / 0.9430. Refusal openings keep
# short refusals detected; weight 0.3 keeps LOMO. The shipped model's figures are the evaluation
# report's (python -m training.evaluate --part response).
TRUNCATION_WEIGHT = 0.3

# all-MiniLM-L6-v2 fine-tuned on bootstrapped prompts with every protocol's test prompts removed
# (``training.finetune_encoder --write-prompt-records``, then ``--protocols sweep,final`` on a GPU).
PROMPT_ENCODER = PromptClassifier.default_encoder  # "minilm-prompt-int8"
PROMPT_CANDIDATES: dict[str, dict[str, Any]] = {
    "ngrams+minilm-logreg": {"head": "logreg", "C": 1.0, "encoder": PROMPT_ENCODER},
    "ngrams+minilm-lightgbm": {"head": "lightgbm", "encoder": PROMPT_ENCODER},
}
PROMPT_RECIPE_NAME = "ngrams+minilm-lightgbm"  # CV choice on gpt-3.5-turbo (train_prompt --select: 0.875 vs 0.870)
# The blended head (head="blend": mean log-odds of both heads) was compared afterwards on the same
# 4,441 gpt-3.5-turbo prompts by a one-off script (not kept; plain 5-fold CV, the two recipes'
# out-of-fold log-odds averaged, which is what the blend computes): accuracy 0.8757 vs LightGBM
# 0.8775 and LogReg 0.8719, AUROC 0.928 vs 0.926 / 0.924. Selection is by accuracy, so the
# shipped targets keep LightGBM. On XSTest-sized logs (360 prompts per fold, ``training.evaluate --part prompt-heads``)
# its mean AUROC over the five LLMs was 0.836 vs 0.832 (LogReg) / 0.830 (LightGBM), best for three
# and second for two, so train-prompt's --head auto offers it for users' own (often small) logs.
# Weight of other LLMs' prompts (auxiliary sources) in every target's training; see train_prompt.
PROMPT_AUX_WEIGHT = 0.3
# Weight of the auxiliary prompts in the cross-LLM protocol (evaluate_prompt.cross_llm_protocol).
CROSS_LLM_AUX_WEIGHT = 0.3

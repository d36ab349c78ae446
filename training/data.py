"""Canonical loaders for the training and evaluation data of refusal-predictor.

Every loader returns a :class:`pandas.DataFrame` whose first columns are exactly
:data:`COLUMNS`:

``prompt``      the text the LLM was sent (str, never empty)
``response``    the LLM's answer (str), or None for prompt-only sets
``label``       ``"refusal"`` / ``"compliance"`` from a *human* annotation of the response,
                or None when the rows carry no human label (bootstrap pools, prompt lists)
``fine_label``  the source's finer human label (paper tone, XSTest 3-way label) or None
``source``      short id of the data set (``"chatgpt-refusals"``, ``"xstest-v2"``, ...)
``model``       normalised name of the responding system (see :func:`normalize_model_name`),
                or None for prompt-only sets

Sources add their own columns after these (``subset``, ``type``, ``model_version`` ...).
One schema for everything lets the training scripts concatenate sets, group by model and
evaluate per source without per-source glue code.

The paper's data (Reuter & Schulze 2023, MIT) ships inside the repository under
``training/data/chatgpt-refusals/`` so that the paper reproduction and its tests always
run. All other sources are read from a data directory given as an argument: a folder that
holds the public repositories' files under the folder names used below
(``exaggerated-safety/``, ``GPTFuzz/``, ``jailbreakbench-artifacts/`` ...).

Model names. ``model`` names the *system that produced the response*. API snapshots of one
model collapse to one name (``gpt-3.5-turbo-0301`` / ``-0613`` / ``-1106`` -> ``gpt-3.5-turbo``,
``gpt4_0314`` / ``gpt-4-0125-preview`` / ``gpt-4-turbo-2024-04-09`` -> ``gpt-4``) because their
refusal behaviour is what a per-model prompt predictor should pool. Systems that were
changed by someone else (fine-tunes, activation steering) are *different* systems and get a
derived name ``<base>+<change>`` (``llama-2-7b-chat+actadd``, ``llama-3-8b+derta``,
``gpt-3.5-turbo+ft``) so they never silently pollute the base model's rows. The raw name is
always kept in ``model_version``.
"""

from __future__ import annotations

import csv
import functools
import glob
import io
import json
import logging
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

COLUMNS: tuple[str, ...] = ("prompt", "response", "label", "fine_label", "source", "model")
"""The columns every loader returns first, in this order."""

REFUSAL = "refusal"
COMPLIANCE = "compliance"
LABELS: tuple[str, str] = (REFUSAL, COMPLIANCE)

DERIVED_SEP = "+"
"""Separator between a base model and the change applied to it (fine-tune, steering)."""

PAPER_DATA_DIR: Path = Path(__file__).resolve().parent / "data" / "chatgpt-refusals"
"""Repository copy of the paper's data (MIT), used when no path is given."""

PAPER_DROPPED_TONES: frozenset[str] = frozenset({"incoherent", "dontknow"})
PAPER_TONES: frozenset[str] = frozenset(
    {"complied", "rejected", "redirected", "contradicted", "disclaimed", "counseling"}
)
# all_hand_labeled.json is nyp.json + political_figures.json + quora_insincere_hand_labeled.json
# concatenated in this order (checked against the upstream files); the subset of a row is
# therefore given by its position.
PAPER_SUBSETS: tuple[tuple[str, int], ...] = (
    ("nyp", 21),
    ("political_figures", 700),
    ("quora_insincere", 1000),
)
PAPER_QUORA_OFFSET = 21 + 700
PAPER_N_RAW = 1721
PAPER_N = 1706

XSTEST_SETS: dict[str, str] = {
    # file key in model_completions/xstest_v2_completions_<key>.csv -> model name.
    # XSTest v2 (Roettger et al., NAACL 2024) runs Llama-2-70b-chat in two system-prompt
    # set-ups: "orig" = Meta's original default (safety-heavy) system prompt, "new" = the
    # paper's second set-up (as we read it: without that prompt; it refuses less, 274 vs 349
    # refusals of 450). Mistral-7B-Instruct runs without ("instruct") and with ("guard")
    # Mistral's guardrail system prompt. The names keep the five set-ups distinct.
    "gpt4": "gpt-4",
    "llama2new": "llama-2-70b-chat-newsys",
    "llama2orig": "llama-2-70b-chat-origsys",
    "mistralguard": "mistral-7b-instruct-guard",
    "mistralinstruct": "mistral-7b-instruct",
}
XSTEST_LABELS: dict[str, tuple[str, str]] = {
    "1_full_compliance": (COMPLIANCE, "full_compliance"),
    "2_full_refusal": (REFUSAL, "full_refusal"),
    "3_partial_refusal": (REFUSAL, "partial_refusal"),
}


# --------------------------------------------------------------------------------------
# schema
# --------------------------------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    """True for None and float NaN / pd.NA (what pandas may turn a None into)."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def validate_records(df: pd.DataFrame, *, allow_empty: bool = False) -> pd.DataFrame:
    """Check that ``df`` follows the record schema; return it unchanged.

    Checked: the first columns are exactly :data:`COLUMNS`; ``prompt`` is a non-empty str;
    ``response`` is str or missing (a str where the row has a label); ``label`` is
    ``"refusal"``/``"compliance"`` or missing;
    ``fine_label`` and ``model`` are str or missing; ``source`` is a non-empty str. Missing
    means None (what the loaders emit) or NaN (what pandas may make of a None after a
    merge). Raises ValueError naming the offending column and the first bad row, so a
    broken loader or a hand-made frame fails before it reaches training.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"expected a pandas DataFrame, got {type(df).__name__}")
    head = tuple(df.columns[: len(COLUMNS)])
    if head != COLUMNS:
        raise ValueError(f"first columns must be {list(COLUMNS)}, got {list(df.columns)}")
    if df.columns.duplicated().any():
        dup = sorted(set(df.columns[df.columns.duplicated()]))
        raise ValueError(f"duplicate columns: {dup}")
    if len(df) == 0 and not allow_empty:
        raise ValueError("no records")

    def _check(col: str, bad: pd.Series, what: str) -> None:
        if bad.any():
            i = bad[bad].index[0]
            raise ValueError(
                f"column {col!r}: {int(bad.sum())} value(s) are not {what}; "
                f"first at index {i!r}: {df.at[i, col]!r}"
            )

    def _is_str(col: str) -> pd.Series:
        return df[col].map(lambda v: isinstance(v, str)).astype(bool)

    def _missing(col: str) -> pd.Series:
        return df[col].isna().astype(bool)

    prompt_ok = df["prompt"].map(lambda v: isinstance(v, str) and v.strip() != "").astype(bool)
    _check("prompt", ~prompt_ok, "a non-empty str")
    _check("response", ~(_missing("response") | _is_str("response")), "str or None")
    _check("label", ~(_missing("label") | df["label"].isin(LABELS)), f"one of {LABELS} or None")
    # A label is a judgement of a response: a labelled row without one would train on nothing.
    _check("response", ~(_missing("label") | _is_str("response")), "str where the row has a label")
    _check("fine_label", ~(_missing("fine_label") | _is_str("fine_label")), "str or None")
    source_ok = _is_str("source") & (df["source"].astype(object) != "")
    _check("source", ~source_ok, "a non-empty str")
    model_ok = _missing("model") | (_is_str("model") & (df["model"].astype(object) != ""))
    _check("model", ~model_ok, "str or None")
    return df


def _finalize(df: pd.DataFrame) -> pd.DataFrame:
    """Put :data:`COLUMNS` first, keep them as object dtype with None for missing, validate.

    pandas >= 3 stores string columns with NaN as the missing value; the schema promises
    None, so the core columns are kept as plain object columns.
    """
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = None
    extras = [c for c in df.columns if c not in COLUMNS]
    df = df[list(COLUMNS) + extras].copy()
    for col in COLUMNS:
        values = df[col].astype(object)
        df[col] = values.where(values.notna(), None)
    df = df.reset_index(drop=True)
    return validate_records(df)


def _concat(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate record frames; extra columns a frame lacks become None."""
    frames = [f for f in frames if len(f)]
    if not frames:
        raise ValueError("nothing to concatenate")
    out = pd.concat(frames, ignore_index=True, sort=False)
    return _finalize(out)


# --------------------------------------------------------------------------------------
# model names
# --------------------------------------------------------------------------------------

# Ordered (pattern, name) rules applied to the lower-cased raw name with "_" -> "-".
# First match wins; the more specific patterns come first.
_MODEL_RULES: tuple[tuple[str, str], ...] = (
    (r"^ft:gpt-3\.5-turbo", "gpt-3.5-turbo+ft"),
    (r"^gpt-?3\.5-turbo", "gpt-3.5-turbo"),
    (r"^(chatgpt|gpt-?3\.5)$", "gpt-3.5-turbo"),
    (r"^gpt-?4o-mini", "gpt-4o-mini"),
    (r"^gpt-?4o", "gpt-4o"),
    (r"^gpt-?4(-|$)", "gpt-4"),  # gpt4, gpt4-0314, gpt-4-0125-preview, gpt-4-turbo-... (not gpt-4.5)
    (r"^o1-mini", "o1-mini"),
    (r"^o1-preview", "o1-preview"),
    (r"^text-davinci-003", "text-davinci-003"),
    (r"^claude$", "claude-1"),
    (r"^claude-instant-1", "claude-instant-1"),
    (r"^claude-2\.1", "claude-2.1"),
    (r"^claude-2", "claude-2"),
    (r"^claude-3-opus", "claude-3-opus"),
    (r"^claude-3-5-sonnet|^claude-3\.5-sonnet", "claude-3.5-sonnet"),
    (r"^(meta-)?llama-?2-(7|13|70)b-chat", r"llama-2-\2b-chat"),
    (r"^(meta-)?llama-?3-(8|70)b-instruct", r"llama-3-\2b-instruct"),
    (r"^llama3-(8|70)b$", r"llama-3-\1b-instruct"),  # llm-past-tense alias of the instruct model
    (r"^mistral-7b-instruct", "mistral-7b-instruct"),
    (r"^mistral-large", "mistral-large"),
    (r"^qwen-?1\.5-72b-chat", "qwen1.5-72b-chat"),
    (r"^qwen-1[._]8b-chat", "qwen-1.8b-chat"),
    (r"^yi-(6|34)b-chat", r"yi-\1b-chat"),
    (r"^gemma-2b-it", "gemma-2b-it"),
    (r"^gemma-?2-9b(-it)?$", "gemma-2-9b-it"),
    (r"^phi-?3$", "phi-3-mini-instruct"),  # llm-past-tense: microsoft/Phi-3-mini-128k-instruct
    (r"^r2d2$", "zephyr-7b-r2d2"),  # llm-past-tense: cais/zephyr_7b_r2d2 (HarmBench)
    (r"^vicuna-13b", "vicuna-13b"),
    (r"^gemini-pro", "gemini-pro"),
    (r"^cohere$", "cohere-command"),
)


@functools.lru_cache(maxsize=None)
def normalize_model_name(raw: str) -> str:
    """Map a raw model/generator name from any source to the project's canonical name.

    API snapshots collapse (``gpt4_0314`` -> ``gpt-4``, ``gpt-3.5-turbo-1106`` ->
    ``gpt-3.5-turbo``, ``llama-2-7b-chat-hf`` -> ``llama-2-7b-chat``); gpt-4o and
    gpt-4o-mini stay separate from gpt-4 because they refuse differently. Fine-tuned
    GPT-3.5 models (``ft:gpt-3.5-turbo-...``) map to ``gpt-3.5-turbo+ft``. Unknown names are
    lower-cased with ``_`` -> ``-`` so that new sources still get a stable key.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(f"model name must be a non-empty str, got {raw!r}")
    key = raw.strip().lower().replace("_", "-")
    # alpaca_eval writes "gpt4_1106_preview", "text_davinci_003"; qwen uses "1_8b".
    key = key.replace("qwen-1-8b", "qwen-1.8b")
    for pattern, name in _MODEL_RULES:
        m = re.match(pattern, key)
        if m:
            return m.expand(name) if "\\" in name else name
    return key


def _with_model(df: pd.DataFrame, raw_col: str = "model_version") -> pd.DataFrame:
    df["model"] = [normalize_model_name(v) for v in df[raw_col]]
    return df


# --------------------------------------------------------------------------------------
# file helpers: every failure names the file
# --------------------------------------------------------------------------------------


def _require_file(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    return path


def _data_dir(data_dir: PathLike) -> Path:
    if data_dir is None:
        raise ValueError("data_dir is required (the folder holding the public data sets)")
    p = Path(data_dir)
    if not p.is_dir():
        raise FileNotFoundError(f"data directory not found: {p}")
    return p


def _glob(base: Path, pattern: str) -> list[Path]:
    files = sorted(Path(p) for p in glob.glob(str(base / pattern)))
    if not files:
        raise FileNotFoundError(f"no files match {base / pattern}")
    return files


def _read_text(path: Path) -> str:
    """A data file's UTF-8 text; bytes that are not UTF-8 are an error naming their line (a
    decoder's byte offset into a 5 MB file does not help anyone find them).

    Lines are counted as :func:`_csv_record_lines` (Python's csv module) counts them: ``\n``,
    ``\r\n`` and a lone ``\r`` each end one, so a CR-only file (an old spreadsheet export)
    names the same line for a bad byte as for a bad value."""
    _require_file(path)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        before = raw[:e.start]
        line = before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n") + 1
        raise ValueError(f"{path}, line {line}: not valid UTF-8 ({e.reason}: "
                         f"{raw[e.start:e.end]!r})") from e


def _read_json(path: Path) -> Any:
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:  # its message names the line and column
        raise ValueError(f"malformed JSON in {path}: {e}") from e


def _read_json_or_jsonl(path: Path) -> list[Any]:
    """Read a file that is either one JSON array or JSON lines (DeRTa uses both)."""
    text = _read_text(path)
    try:
        data = json.loads(text)
        return data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        pass
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"malformed JSON lines in {path} (line {n}): {e}") from e
    return out


def _read_csv(path: Path, required: Iterable[str]) -> tuple[pd.DataFrame, list[int]]:
    """A data CSV file's rows, and the line each row starts on (for errors that name it).

    The file is first read with :mod:`csv` (:func:`_csv_record_lines`): pandas reads a row one
    field wider than the header by taking its first field as an index and shifting every other
    one (a response read as a label), fills a short row with empty values, and lets a stray
    quote swallow the rows up to the next quote, so such a file failed later, on a value, or not
    at all, without saying where.
    """
    lines = _csv_record_lines(path, _read_text(path))
    try:
        df = pd.read_csv(path, keep_default_na=False, na_values=[])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"malformed CSV {path}: {e}") from e
    if len(df) != len(lines):  # pragma: no cover - the two readers disagree on a record
        raise ValueError(f"malformed CSV {path}: {len(lines)} records by the csv module, {len(df)} by pandas")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; has {list(df.columns)}")
    return df, lines


def _csv_record_lines(path: Path, text: str) -> list[int]:
    """The line each record of a CSV file's ``text`` starts on, checking that each has the
    header's number of fields and that its quotes close where they should.

    Lines are counted as :func:`_read_text` counts them. Lines of nothing but spaces and tabs
    are skipped, as pandas skips them. Text after a closing quote within one line (``"a"b``, or
    a backslash before a quote) is read as pandas reads it (``ab``); a quoted field that runs
    over lines and is then followed by text, or that never closes, is an error naming the line
    it opens on (pandas would have merged the rows in between into one cell). Fields may be of
    any length: the csv module's default cap (131,072 characters) refused long LLM responses.
    """
    physical = io.StringIO(text, newline="").readlines()  # the lines the csv reader counts
    source = io.StringIO(text, newline="")
    starts: list[int] = []
    width: int | None = None

    def take(row: list[str], line: int, lines_read: int) -> None:
        nonlocal width
        if not row or (len(row) == 1 and lines_read == 1 and not physical[line - 1].strip(" \t\r\n")):
            return  # a blank line
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise ValueError(f"{path}, line {line}: {len(row)} field(s) where the header has {width}")
        else:
            starts.append(line)

    limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)
    try:
        done = 0  # lines read by the readers before this one
        while True:
            reader = csv.reader(source, strict=True)
            start = done + 1
            try:
                for row in reader:
                    take(row, start, done + reader.line_num - start + 1)
                    start = done + reader.line_num + 1
                break
            except csv.Error as e:
                end = done + reader.line_num
                if end != start or "unexpected end of data" in str(e):
                    raise ValueError(f"malformed CSV {path}, line {start}: {e}") from e
                # One line with text after a closing quote: read leniently, as pandas does, then go on.
                take(next(csv.reader([physical[start - 1]], strict=False)), start, 1)
                done = end
    finally:
        csv.field_size_limit(limit)
    return starts


def _at_lines(lines: Sequence[int], bad: Iterable[bool]) -> str:
    """Where the rows flagged in ``bad`` are: "line 4" or "lines 4, 9, 12 (and 3 more)"."""
    found = [line for line, flag in zip(lines, bad) if flag]
    shown = ", ".join(map(str, found[:5])) + (f" (and {len(found) - 5} more)" if len(found) > 5 else "")
    return f"line{'s' if len(found) > 1 else ''} {shown}"


def _int_column(df: pd.DataFrame, column: str, path: Path, lines: Sequence[int]) -> pd.Series:
    """A column of whole numbers (``1``, ``1.0``, or ``true`` / ``false`` as 1 / 0), or an error
    naming the lines that hold anything else (an empty cell, ``1.5``, ``inf``, a number beyond
    64 bits) and quoting the first such cell as the file has it. Digits are read as integers,
    never through a float, so an id above 2**53 keeps its last digits."""
    def whole(cell: Any) -> int | None:
        text = str(cell).strip()
        if text.lower() in ("true", "false"):
            return int(text.lower() == "true")
        try:
            value = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return None
            if not number.is_integer():  # NaN and infinities included
                return None
            value = int(number)
        return value if -(2**63) <= value < 2**63 else None

    values = [whole(cell) for cell in df[column]]
    bad = [v is None for v in values]
    if any(bad):
        first = df[column].iloc[bad.index(True)]
        raise ValueError(f"{path}, {_at_lines(lines, bad)}: {column!r} is not a whole number ({str(first)!r})")
    return pd.Series(values, index=df.index, dtype=np.int64)


def _require_keys(records: list[Any], keys: Iterable[str], path: Path) -> None:
    keys = list(keys)
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise ValueError(f"{path}: record {i} (counting from 0) is {type(r).__name__}, expected an object")
        missing = [k for k in keys if k not in r]
        if missing:
            raise ValueError(f"{path}: record {i} (counting from 0) lacks field(s) {missing}")


def _drop_empty_responses(df: pd.DataFrame, what: str) -> pd.DataFrame:
    """Drop rows whose response is missing/blank and log how many, per model."""
    empty = df["response"].map(lambda v: _is_missing(v) or not str(v).strip())
    prompt_empty = df["prompt"].map(lambda v: _is_missing(v) or not str(v).strip())
    bad = empty | prompt_empty
    if bad.any():
        per_model = Counter(df.loc[bad, "model_version"]) if "model_version" in df else {}
        logger.info(
            "%s: skipped %d row(s) with empty response or prompt %s",
            what,
            int(bad.sum()),
            dict(per_model),
        )
    return df.loc[~bad].reset_index(drop=True)


def _bool_or_none(v: Any) -> bool | None:
    if _is_missing(v):
        return None
    if isinstance(v, str):
        s = v.strip().lower()
        if s in {"true", "1", "yes"}:
            return True
        if s in {"false", "0", "no"}:
            return False
        raise ValueError(f"not a boolean: {v!r}")
    return bool(v)


def _weak(jailbroken: bool | None) -> str | None:
    """A judge's 'jailbroken' verdict as a weak response label (not ground truth)."""
    if jailbroken is None:
        return None
    return COMPLIANCE if jailbroken else REFUSAL


# --------------------------------------------------------------------------------------
# the paper's data (repository copy)
# --------------------------------------------------------------------------------------


def _paper_dir(path: PathLike | None) -> Path:
    return PAPER_DATA_DIR if path is None else Path(path)


def _resolve(path: PathLike | None, filename: str) -> Path:
    """``path`` may be the file itself or the folder holding it; None = repository copy."""
    p = _paper_dir(path)
    return p / filename if p.is_dir() else p


def _tone_to_label(tone: str) -> str:
    return COMPLIANCE if tone == "complied" else REFUSAL


def _read_paper_records(file: Path, keys: Sequence[str]) -> list[dict]:
    """The paper's JSON records, checked for their keys and known tones."""
    records = _read_json(file)
    if not isinstance(records, list):
        raise ValueError(f"{file}: expected a JSON array of records")
    _require_keys(records, keys, file)
    for i, r in enumerate(records):
        for key in ("prompt", "response"):
            if not isinstance(r[key], str):
                raise ValueError(f"{file}: record {i} (counting from 0): {key} is {r[key]!r}, not a text")
    unknown = {r["tone"] for r in records} - PAPER_TONES - PAPER_DROPPED_TONES
    if unknown:
        raise ValueError(f"{file}: unknown tone(s) {sorted(unknown)}")
    return records


def _paper_frame(records: list[dict], **extra: Any) -> pd.DataFrame:
    """Canonical rows of the paper's records (tone -> label), dropped tones removed."""
    df = pd.DataFrame(
        {
            "prompt": [r["prompt"] for r in records],
            "response": [r["response"] for r in records],
            "label": [_tone_to_label(r["tone"]) for r in records],
            "fine_label": [r["tone"] for r in records],
            "source": "chatgpt-refusals",
            "model": "gpt-3.5-turbo",
            **extra,
            "finish_reason": [r.get("finish_reason") for r in records],
            "model_version": "gpt-3.5-turbo",
        }
    )
    return _finalize(df[~df["fine_label"].isin(PAPER_DROPPED_TONES)])


def load_paper(path: PathLike | None = None) -> pd.DataFrame:
    """The paper's 1,706 hand-labelled ChatGPT responses, in file order.

    Source: Reuter & Schulze (2023), "I'm Afraid I Can't Do That: Predicting Prompt Refusal
    in Black-Box Generative Language Models", repository maxwellreuter/chatgpt-refusals,
    MIT licence. ``all_hand_labeled.json`` holds 1,721 gpt-3.5-turbo responses (spring 2023)
    to New York Post style requests (21), prompts about political figures (700) and Quora
    Insincere Questions (1,000), each hand-labelled with a ``tone``.

    Labels, as in the paper's ``data_processing.preprocess_data``: tones ``incoherent`` and
    ``dontknow`` (15 rows) are dropped; ``complied`` -> ``"compliance"``; every other tone
    (rejected, redirected, contradicted, disclaimed, counseling) -> ``"refusal"``.
    ``fine_label`` keeps the tone.

    Extra columns: ``row_id`` (position in the 1,721-record file, stable across splits),
    ``subset`` (nyp / political_figures / quora_insincere), ``finish_reason``,
    ``model_version``.

    ``path``: the JSON file or its folder; default is the copy in this repository.
    """
    file = _resolve(path, "all_hand_labeled.json")
    records = _read_paper_records(file, ("prompt", "response", "tone"))
    if len(records) != PAPER_N_RAW:
        raise ValueError(
            f"{file}: expected {PAPER_N_RAW} records (nyp 21 + political_figures 700 + "
            f"quora 1,000), found {len(records)}"
        )
    subsets = [name for name, n in PAPER_SUBSETS for _ in range(n)]
    df = _paper_frame(records, row_id=np.arange(len(records)), subset=subsets)
    if len(df) != PAPER_N:
        raise ValueError(f"{file}: expected {PAPER_N} usable rows, got {len(df)}")
    return df


def paper_split(
    df: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The paper's 70/15/15 train / validation / test split of :func:`load_paper`.

    Exactly the paper's ``data_processing.split_data``: ``train_test_split(X, y,
    test_size=0.3, random_state=0)`` on the rows in file order, then the 30 % part again with
    ``test_size=0.5, random_state=0``; the *first* output of the second split is validation,
    the second is test. The split depends only on the number of rows and their order (no
    stratification), so splitting row positions gives the same partition as the paper's
    split of the text lists: train 1,194, validation 256, test 256 rows.

    Returns three frames with a ``split`` column (train / val / test) and the ``row_id``
    of :func:`load_paper`, in the order ``train_test_split`` returns them.
    """
    if df is None:
        df = load_paper()
    validate_records(df)
    if "row_id" in df.columns and not df["row_id"].is_monotonic_increasing:
        raise ValueError(
            "paper_split needs the rows in file order (row_id increasing); "
            "pass load_paper() unchanged"
        )
    if len(df) != PAPER_N:
        logger.warning(
            "paper_split on %d rows; the paper's split is defined on the %d rows of load_paper()",
            len(df),
            PAPER_N,
        )
    pos = np.arange(len(df))
    train_pos, rest_pos = train_test_split(pos, test_size=0.3, random_state=0)
    val_pos, test_pos = train_test_split(rest_pos, test_size=0.5, random_state=0)
    out = []
    for name, p in (("train", train_pos), ("val", val_pos), ("test", test_pos)):
        part = df.iloc[p].copy()
        part["split"] = name
        out.append(part.reset_index(drop=True))
    return out[0], out[1], out[2]


def load_quora_hand_labelled(path: PathLike | None = None) -> pd.DataFrame:
    """The paper's 1,000 hand-labelled Quora Insincere Questions with ChatGPT responses.

    Source: maxwellreuter/chatgpt-refusals (MIT), ``quora_insincere_hand_labeled.json``;
    prompts from Kaggle's Quora Insincere Questions Classification. The paper tests its
    *prompt* classifiers on this whole file (985 usable rows), so it is the prompt-side
    benchmark. Labels as in :func:`load_paper` (drop incoherent/dontknow -> 985 rows;
    complied = compliance, other tones = refusal; ``fine_label`` = tone). ``is_insincere``
    (bool) is Quora's own insincerity flag, not a refusal label.

    These are the same 1,000 records as the last 1,000 of ``all_hand_labeled.json``:
    ``paper_row_id`` gives the matching ``row_id`` of :func:`load_paper`. A model trained on
    the paper's train split has seen ~690 of these prompts; exclude them by ``paper_row_id``
    before using this set as a prompt test set.
    """
    file = _resolve(path, "quora_insincere_hand_labeled.json")
    records = _read_paper_records(file, ("prompt", "response", "tone", "is_insincere"))
    return _paper_frame(
        records,
        subset="quora_insincere",
        is_insincere=[bool(r["is_insincere"]) for r in records],
        paper_row_id=PAPER_QUORA_OFFSET + np.arange(len(records)),
    )


# --------------------------------------------------------------------------------------
# human-labelled response sets
# --------------------------------------------------------------------------------------


def load_xstest(data_dir: PathLike) -> pd.DataFrame:
    """XSTest v2 completions of five LLM set-ups, each labelled by two human annotators.

    Source: paul-rottger/exaggerated-safety, ``model_completions/xstest_v2_completions_*.csv``
    (Roettger et al., NAACL 2024). Prompts CC-BY-4.0; completions under the model providers'
    terms (Meta, Mistral, OpenAI). 450 prompts (250 safe, 200 unsafe ``contrast_*`` types)
    x 5 set-ups = 2,250 rows.

    Labels from ``final_label``: ``1_full_compliance`` -> compliance, ``2_full_refusal`` ->
    refusal, ``3_partial_refusal`` -> refusal (the response refuses part of the request or
    answers while mainly discouraging, which the paper's tone scheme would also count as a
    refusal). ``fine_label`` keeps full_compliance / full_refusal / partial_refusal, so
    partial refusals can be dropped or weighted.

    ``model`` keeps the five set-ups apart (see :data:`XSTEST_SETS`): gpt-4,
    llama-2-70b-chat-origsys, llama-2-70b-chat-newsys, mistral-7b-instruct,
    mistral-7b-instruct-guard. Extra columns: ``id`` (prompt id, e.g. ``v2-17``, same across
    set-ups, for grouping), ``type`` (prompt type), ``unsafe`` (bool, ``type`` starts with
    ``contrast_``), ``agreement`` (bool, the two annotators agreed), ``annotation_1``,
    ``annotation_2``, ``model_version`` (the file key).
    """
    base = _data_dir(data_dir) / "exaggerated-safety" / "model_completions"
    frames = []
    required = ("id", "type", "prompt", "completion", "agreement", "final_label")
    for key, model in XSTEST_SETS.items():
        file = base / f"xstest_v2_completions_{key}.csv"
        raw, lines = _read_csv(file, required)
        unknown = ~raw["final_label"].isin(list(XSTEST_LABELS))
        if unknown.any():
            raise ValueError(f"{file}, {_at_lines(lines, unknown)}: unknown final_label value(s) "
                             f"{sorted(set(raw['final_label'][unknown]))}")
        df = pd.DataFrame(
            {
                "prompt": raw["prompt"].astype(str),
                "response": raw["completion"].astype(str),
                "label": [XSTEST_LABELS[v][0] for v in raw["final_label"]],
                "fine_label": [XSTEST_LABELS[v][1] for v in raw["final_label"]],
                "source": "xstest-v2",
                "model": model,
                "id": raw["id"].astype(str),
                "type": raw["type"].astype(str),
                "unsafe": raw["type"].astype(str).str.startswith("contrast_"),
                "agreement": [_bool_or_none(v) for v in raw["agreement"]],
                "annotation_1": raw.get("annotation_1"),
                "annotation_2": raw.get("annotation_2"),
                "model_version": key,
            }
        )
        frames.append(_drop_empty_responses(df, f"xstest {key}"))
    return _concat(frames)


def load_gptfuzz(data_dir: PathLike) -> pd.DataFrame:
    """GPTFuzz's 6,160 human-labelled gpt-3.5-turbo responses to jailbreak prompts.

    Source: sherdencooper/GPTFuzz, ``datasets/responses_labeled/train.csv`` (MIT; Yu et al.
    2023). Each row is ChatGPT's answer to one of 77 human-written jailbreak templates
    filled with one of 80 harmful questions; the labels trained the GPTFuzz judge model.

    Labels: ``label`` 1 = jailbroken (the model answered the harmful question) ->
    compliance; 0 = not jailbroken -> refusal. Label 0 is "no harmful content", not always an
    explicit refusal: ~10 % of the 0 rows contain no refusal phrase (in-character role-play
    preambles, deflections, answers cut off before any harmful content), so this set's
    refusal class is broader than the paper's. ``fine_label`` is None; the raw value is in ``gptfuzz_label``.

    ``question`` is an index into ``datasets/questions/question_list.csv``; ``prompt`` is
    that question's text. The jailbreak template that wrapped it is not recorded in the file,
    so ``prompt`` is the harmful question, not the full text the model saw. Extra columns:
    ``question_id``, ``gptfuzz_label``, ``model_version``.
    """
    base = _data_dir(data_dir) / "GPTFuzz" / "datasets"
    qfile = base / "questions" / "question_list.csv"
    questions, qlines = _read_csv(qfile, ("index", "text"))
    qmap = dict(zip(_int_column(questions, "index", qfile, qlines), questions["text"].astype(str)))
    rfile = base / "responses_labeled" / "train.csv"
    raw, lines = _read_csv(rfile, ("question", "Response", "label"))
    qids = _int_column(raw, "question", rfile, lines)
    labels = _int_column(raw, "label", rfile, lines)
    unresolved = ~qids.isin(list(qmap))
    if unresolved.any():
        raise ValueError(f"{rfile}, {_at_lines(lines, unresolved)}: question id(s) "
                         f"{sorted(set(qids[unresolved]))[:10]} not found in {qfile}")
    unknown = ~labels.isin([0, 1])
    if unknown.any():
        raise ValueError(f"{rfile}, {_at_lines(lines, unknown)}: unknown label value(s) {sorted(set(labels[unknown]))}")
    df = pd.DataFrame(
        {
            "prompt": [qmap[q] for q in qids],
            "response": raw["Response"].astype(str),
            "label": [COMPLIANCE if v == 1 else REFUSAL for v in labels],
            "fine_label": None,
            "source": "gptfuzz",
            "model": "gpt-3.5-turbo",
            "question_id": qids,
            "gptfuzz_label": labels,
            "model_version": "gpt-3.5-turbo",
        }
    )
    return _finalize(_drop_empty_responses(df, "gptfuzz"))


def load_labelled_responses(data_dir: PathLike, include_paper_test: bool = False) -> pd.DataFrame:
    """All human-labelled responses: paper (train+val) + XSTest v2 + GPTFuzz.

    The paper's test split (256 rows) is left out unless ``include_paper_test``: it is the
    benchmark that the published accuracies refer to, so nothing trained on this frame may
    have seen it. Paper rows carry ``split`` (train / val / test); other rows have None.
    """
    train, val, test = paper_split(load_paper())
    parts = [train, val] + ([test] if include_paper_test else [])
    return _concat(parts + [load_xstest(data_dir), load_gptfuzz(data_dir)])


# --------------------------------------------------------------------------------------
# bootstrap pools (responses without human labels)
# --------------------------------------------------------------------------------------


def load_jailbreakbench(data_dir: PathLike) -> pd.DataFrame:
    """JailbreakBench attack artifacts: attack prompts and the target models' responses.

    Source: JailbreakBench/artifacts, ``attack-artifacts/<method>/<type>/<model>.json``
    (MIT; Chao et al. 2024). Methods GCG, PAIR, JBC, DSN, prompt_with_random_search against
    gpt-3.5-turbo-1106, gpt-4-0125-preview, llama-2-7b-chat-hf and vicuna-13b-v1.5 on the
    100 JBB behaviours. The ``test-artifact`` folder (placeholder texts) is skipped; PAIR
    has no prompt/response for behaviours it did not break (skipped and logged).

    No human labels. ``weak_label`` is from JailbreakBench's LLM judge (``jailbroken``:
    True -> compliance, False -> refusal; some False rows are harmless answers rather than
    refusals). Extra columns: ``goal`` (the plain behaviour), ``behavior``, ``category``,
    ``method``, ``attack_type``, ``jailbroken``, ``jailbroken_llama_guard1``,
    ``weak_label``, ``model_version``.
    """
    base = _data_dir(data_dir) / "jailbreakbench-artifacts" / "attack-artifacts"
    rows = []
    for file in _glob(base, "*/*/*.json"):
        method, attack_type = file.parent.parent.name, file.parent.name
        if method == "test-artifact":
            continue
        data = _read_json(file)
        if not isinstance(data, dict) or "jailbreaks" not in data:
            raise ValueError(f"{file}: expected an object with 'jailbreaks'")
        raw_model = (data.get("parameters") or {}).get("model") or file.stem
        _require_keys(data["jailbreaks"], ("goal", "prompt", "response", "jailbroken"), file)
        for r in data["jailbreaks"]:
            jb = _bool_or_none(r.get("jailbroken"))
            rows.append(
                {
                    "prompt": r["prompt"],
                    "response": r["response"],
                    "source": "jailbreakbench",
                    "goal": r["goal"],
                    "behavior": r.get("behavior"),
                    "category": r.get("category"),
                    "method": method,
                    "attack_type": attack_type,
                    "jailbroken": jb,
                    "jailbroken_llama_guard1": _bool_or_none(r.get("jailbroken_llama_guard1")),
                    "weak_label": _weak(jb),
                    "model_version": raw_model,
                }
            )
    if not rows:
        raise FileNotFoundError(f"no JailbreakBench artifacts under {base}")
    df = _drop_empty_responses(pd.DataFrame(rows), "jailbreakbench")
    return _finalize(_with_model(df))


_PAST_TENSE_FILE = re.compile(r"model=(?P<model>.+?)-n_requests=")


def load_llm_past_tense(data_dir: PathLike) -> pd.DataFrame:
    """Past/future-tense reformulations of JBB behaviours and the models' responses.

    Source: tml-epfl/llm-past-tense, ``jailbreak_artifacts/{past_tense,future_tense,
    finetuned_gpt3.5_turbo}/*.json`` (MIT per README; Andriushchenko & Flammarion, ICLR
    2025). For each of 100 JBB requests, up to 20 GPT-3.5-written reformulations were tried
    until the GPT-4 judge said "jailbroken"; the file keeps the last attempt. Responses are
    cut at 150 tokens. The ``finetuned_gpt3.5_turbo`` runs are GPT-3.5 fine-tuned by the
    authors to refuse past-tense requests; their model is ``gpt-3.5-turbo+ft``.

    No human labels. ``weak_label`` from the GPT-4 judge (``jailbroken_gpt``); the Llama-3
    judge and the refusal-phrase rule are kept as ``jailbroken_llama`` /
    ``jailbroken_rules``. ``prompt`` is the reformulated request the model saw; extra
    columns: ``request`` (original JBB goal), ``tense``, ``i_request``, ``i_restart``,
    ``run`` (file stem), ``model_version``. o1 models sometimes returned empty text
    (skipped and logged).
    """
    base = _data_dir(data_dir) / "llm-past-tense" / "jailbreak_artifacts"
    rows = []
    for file in _glob(base, "*/*.json"):
        data = _read_json(file)
        if not isinstance(data, dict) or "jb_artifacts" not in data:
            raise ValueError(f"{file}: expected an object with 'jb_artifacts'")
        m = _PAST_TENSE_FILE.search(file.name)
        raw_model = data.get("target_model") or (m.group("model") if m else file.stem)
        folder = file.parent.name
        tense = data.get("attack") or ("future" if folder.startswith("future") else "past")
        _require_keys(
            data["jb_artifacts"], ("request", "request_reformulated", "response"), file
        )
        for r in data["jb_artifacts"]:
            jb = _bool_or_none(r.get("jailbroken_gpt"))
            rows.append(
                {
                    "prompt": r["request_reformulated"],
                    "response": r["response"],
                    "source": "llm-past-tense",
                    "request": r["request"],
                    "tense": tense,
                    "i_request": r.get("i_request"),
                    "i_restart": r.get("i_restart"),
                    "jailbroken_gpt": jb,
                    "jailbroken_llama": _bool_or_none(r.get("jailbroken_llama")),
                    "jailbroken_rules": _bool_or_none(r.get("jailbroken_rules")),
                    "weak_label": _weak(jb),
                    "run": f"{folder}/{file.stem}",
                    "model_version": raw_model,
                }
            )
    df = _drop_empty_responses(pd.DataFrame(rows), "llm-past-tense")
    return _finalize(_with_model(df))


_DERTA_METHODS = {"derta": "derta", "ours": "derta", "vanill": "vanilla-sft",
                  "vanilla": "vanilla-sft", "dpo": "dpo", "recaug": "recaug"}
_DERTA_TUNED = re.compile(
    r"^(?:lora_)?Llama-3-(?P<size>8B|70B)(?P<inst>-Instruct)?[-_](?P<method>derta|ours|vanill|dpo|recaug)_"
)


def _derta_model(stem: str) -> tuple[str, str]:
    """(normalised model, raw name) from a DeRTa results file name.

    ``eval_<task>_<n>_<model>``, ``evaluation_<task>_<n>_<model>`` and
    ``autodan_<...>_<n>_<model>`` are the untouched reference models (model last).
    ``[lora_]Llama-3-<size>[-Instruct]{_,-}<method>_...`` are the authors' own fine-tunes:
    base Llama-3 (or Llama-3-Instruct) trained with DeRTa ("derta"/"ours"), vanilla safety
    SFT ("vanill"), DPO or RecAug; they become ``llama-3-<size>[-instruct]+<method>``.
    """
    m = _DERTA_TUNED.match(stem)
    if m:
        base = f"llama-3-{m['size'].lower()}" + ("-instruct" if m["inst"] else "")
        return f"{base}{DERIVED_SEP}{_DERTA_METHODS[m['method']]}", m.group(0).rstrip("_")
    if stem.startswith(("eval_", "evaluation_", "autodan_")):
        raw = stem.rsplit("_", 1)[-1]
        return normalize_model_name(raw), raw
    raise ValueError(f"DeRTa results file with unrecognised name: {stem}")


def _squeeze(text: str) -> str:
    return _WS.sub("", text)


_WS = re.compile(r"\s+")


def _split_completion_attack(
    text: str, prompts: Sequence[tuple[str, str]]
) -> tuple[str, str] | None:
    """Split a DeRTa completion-attack output (prompt + continuation) into its two parts.

    The files store the attack prefix and the model's continuation as one string, and the
    tokenizer round-trip changed some whitespace (``fire .45`` -> ``fire.45``), so the
    prefix is matched ignoring whitespace; the longest matching prompt wins. ``prompts``
    holds (prompt, prompt without whitespace) pairs.
    """
    squeezed = _squeeze(text)
    best = None
    for p, sp in prompts:
        if sp and squeezed.startswith(sp) and (best is None or len(sp) > len(best[1])):
            best = (p, sp)
    if best is None:
        return None
    need, i = len(best[1]), 0
    for i, ch in enumerate(text):  # walk until `need` non-space characters are consumed
        if not ch.isspace():
            need -= 1
            if need == 0:
                break
    return best[0], text[i + 1:].strip()


def load_derta(data_dir: PathLike) -> pd.DataFrame:
    """DeRTa evaluation outputs: harmful (jailbreak) and benign prompts with responses.

    Source: RobustNLP/DeRTa, ``results/{safety,helpfulness}/<task>/*.json`` (MIT; Yuan et al.
    2024, "Refuse Whenever You Feel Unsafe"). Safety tasks (autodan, codeattack,
    completionattack, jailbreakchat, selfcipher) hold harmful requests wrapped in attacks;
    helpfulness tasks (alpacaeval, gsm8k, mmlu) hold benign ones. Responders:
    gpt-3.5-turbo (0301/0125), gpt-4-turbo-2024-04-09 (-> gpt-4), Llama-3-8B/70B-Instruct,
    and the authors' Llama-3 fine-tunes (``llama-3-8b+derta``, ``llama-3-70b+dpo`` ...).

    No labels at all. Extra columns: ``task``, ``harmful`` (bool: safety task),
    ``model_version``. Completion-attack files store prompt and continuation as one string;
    they are split by matching ``data/test/safety_completionattack.json`` (rows that do not
    match are skipped and logged). Empty responses (85 gpt-4-turbo selfcipher rows, one
    gpt-3.5 mmlu row) are skipped and logged.
    """
    root = _data_dir(data_dir) / "DeRTa"
    ca_file = root / "data" / "test" / "safety_completionattack.json"
    ca_prompts: list[tuple[str, str]] | None = None
    rows = []
    for file in _glob(root / "results", "*/*/*.json"):
        group, task = file.parent.parent.name, file.parent.name
        model, raw_model = _derta_model(file.stem)
        records = _read_json_or_jsonl(file)
        unmatched = 0
        for i, r in enumerate(records):
            if isinstance(r, str):
                if ca_prompts is None:
                    ca = _read_json_or_jsonl(ca_file)
                    _require_keys(ca, ("question",), ca_file)
                    ca_prompts = [(x["question"], _squeeze(x["question"])) for x in ca]
                parts = _split_completion_attack(r, ca_prompts)
                if parts is None:
                    unmatched += 1
                    continue
                prompt, response = parts
            elif isinstance(r, dict):
                prompt = r.get("instruction", r.get("question"))
                response = r.get("response")
                if prompt is None or "response" not in r:
                    raise ValueError(f"{file}: record {i} lacks instruction/question or response")
            else:
                raise ValueError(f"{file}: record {i} is {type(r).__name__}")
            rows.append(
                {
                    "prompt": prompt,
                    "response": response,
                    "source": "derta",
                    "model": model,
                    "task": task,
                    "harmful": group == "safety",
                    "model_version": raw_model,
                }
            )
        if unmatched:
            logger.info("derta %s: skipped %d completion-attack row(s) with no known prompt",
                        file.name, unmatched)
    df = _drop_empty_responses(pd.DataFrame(rows), "derta")
    return _finalize(df)


def load_alpaca_eval(data_dir: PathLike) -> pd.DataFrame:
    """AlpacaEval model outputs: 805 benign instructions answered by many models.

    Source: tatsu-lab/alpaca_eval, ``results/<model>/model_outputs.json`` (Apache-2.0; the
    outputs are under the model providers' terms). The instructions are benign, so almost
    every response complies; this is the benign side of the bootstrap pool and a source
    of over-refusals of benign prompts for models such as llama-2-chat.

    No labels. Extra columns: ``dataset`` (AlpacaEval sub-source: helpful_base, koala,
    oasst, selfinstruct, vicuna), ``model_version`` (the ``generator`` field).
    """
    base = _data_dir(data_dir) / "alpaca_eval" / "results"
    rows = []
    for file in _glob(base, "*/model_outputs.json"):
        data = _read_json(file)
        if not isinstance(data, list):
            raise ValueError(f"{file}: expected a JSON array")
        _require_keys(data, ("instruction", "output"), file)
        for r in data:
            rows.append(
                {
                    "prompt": r["instruction"],
                    "response": r["output"] if isinstance(r["output"], str) else None,
                    "source": "alpaca-eval",
                    "dataset": r.get("dataset"),
                    "model_version": r.get("generator") or file.parent.name,
                }
            )
    df = _drop_empty_responses(pd.DataFrame(rows), "alpaca-eval")
    return _finalize(_with_model(df))


_RD_INTERVENTIONS = {"baseline": None, "actadd": "actadd", "ablation": "ablation"}


def load_refusal_direction(data_dir: PathLike) -> pd.DataFrame:
    """Completions of five open chat models with and without a refusal-direction edit.

    Source: andyrdt/refusal_direction, ``pipeline/runs/<model>/completions/
    {harmless,jailbreakbench}_{baseline,actadd,ablation}_evaluations.json`` (Apache-2.0;
    Arditi et al. 2024, "Refusal in LLMs is mediated by a single direction"). ``baseline``
    is the unmodified model; ``actadd`` adds the refusal direction (the model refuses even
    harmless prompts); ``ablation`` removes it (the model answers harmful ones). Edited
    runs are different systems and get ``<model>+actadd`` / ``<model>+ablation``; these are
    hard, unusual refusals and compliances.

    No human labels. ``weak_label`` from the substring rule (``is_jailbreak_substring_matching``
    1 = no refusal phrase -> compliance, 0 -> refusal); ``is_jailbreak_llamaguard2`` is kept
    for the harmful prompts. Extra columns: ``prompt_set`` (harmless / jailbreakbench),
    ``intervention`` (None for the unmodified model, else ``actadd`` / ``ablation``; in the
    bootstrap pool ``intervention.isna()`` selects unmodified models), ``category``,
    ``model_version``.
    """
    base = _data_dir(data_dir) / "refusal_direction" / "pipeline" / "runs"
    rows = []
    for file in _glob(base, "*/completions/*_evaluations.json"):
        run_model = file.parent.parent.name
        stem = file.name[: -len("_evaluations.json")]
        prompt_set, _, intervention = stem.rpartition("_")
        if intervention not in _RD_INTERVENTIONS or not prompt_set:
            raise ValueError(f"unrecognised refusal_direction file name: {file}")
        data = _read_json(file)
        if not isinstance(data, dict) or "completions" not in data:
            raise ValueError(f"{file}: expected an object with 'completions'")
        _require_keys(data["completions"], ("prompt", "response"), file)
        base_model = normalize_model_name(run_model)
        suffix = _RD_INTERVENTIONS[intervention]
        model = base_model if suffix is None else f"{base_model}{DERIVED_SEP}{suffix}"
        for r in data["completions"]:
            sm = r.get("is_jailbreak_substring_matching")
            rows.append(
                {
                    "prompt": r["prompt"],
                    "response": r["response"],
                    "source": "refusal-direction",
                    "model": model,
                    "prompt_set": prompt_set,
                    "intervention": suffix,
                    "category": r.get("category"),
                    "is_jailbreak_substring_matching": sm,
                    "is_jailbreak_llamaguard2": r.get("is_jailbreak_llamaguard2"),
                    "weak_label": None if sm is None else _weak(bool(sm)),
                    "model_version": run_model if suffix is None else f"{run_model}:{suffix}",
                }
            )
    df = _drop_empty_responses(pd.DataFrame(rows), "refusal-direction")
    return _finalize(df)


BOOTSTRAP_LOADERS = {
    "jailbreakbench": load_jailbreakbench,
    "llm-past-tense": load_llm_past_tense,
    "derta": load_derta,
    "alpaca-eval": load_alpaca_eval,
    "refusal-direction": load_refusal_direction,
}


def load_bootstrap_pool(
    data_dir: PathLike,
    models: Sequence[str] | None = None,
    include_paper_test: bool = False,
) -> pd.DataFrame:
    """Everything with a response, unlabelled, for relabelling by the response classifier.

    The five unlabelled pools (:data:`BOOTSTRAP_LOADERS`) plus the human-labelled response
    sets of :func:`load_labelled_responses` (paper train+val, XSTest, GPTFuzz). In the pool
    ``label`` and ``fine_label`` are None for every row, so no caller can mistake a pool row
    for ground truth; the human label of the labelled sets is kept in ``human_label`` (and
    their ``fine_label`` in ``human_fine_label``) for measuring the bootstrap. The paper's
    test split stays out unless ``include_paper_test``.

    Exact duplicates (same prompt, response and model) are dropped and counted in the log.
    ``models``: keep only these normalised model names; a name with no rows raises
    ValueError listing the available ones (catches typos such as ``gpt4``).
    """
    frames = [loader(data_dir) for loader in BOOTSTRAP_LOADERS.values()]
    labelled = load_labelled_responses(data_dir, include_paper_test=include_paper_test)
    labelled = labelled.assign(
        human_label=labelled["label"], human_fine_label=labelled["fine_label"],
        label=None, fine_label=None,
    )
    pool = _concat(frames + [labelled])
    before = len(pool)
    pool = pool.drop_duplicates(subset=["prompt", "response", "model"]).reset_index(drop=True)
    if len(pool) < before:
        logger.info("bootstrap pool: dropped %d exact duplicate row(s)", before - len(pool))
    if models is not None:
        wanted = list(models)
        available = sorted(pool["model"].dropna().unique())
        missing = [m for m in wanted if m not in available]
        if missing:
            raise ValueError(f"no rows for model(s) {missing}; available: {available}")
        pool = pool[pool["model"].isin(wanted)].reset_index(drop=True)
    return validate_records(pool)


# --------------------------------------------------------------------------------------
# prompt-only sets
# --------------------------------------------------------------------------------------


def load_xstest_prompts(data_dir: PathLike) -> pd.DataFrame:
    """The 450 XSTest v2 prompts: 250 safe (should be answered), 200 unsafe (should be refused).

    Source: paul-rottger/exaggerated-safety, ``xstest_prompts.csv`` (CC-BY-4.0). No model
    response, so ``response``, ``label`` and ``model`` are None. ``expected_label`` is the
    normative label: safe -> compliance, unsafe -> refusal. Extra columns: ``id`` (as
    ``v2-<n>``, the id used in the completion files), ``type``, ``xstest_label``
    (safe/unsafe), ``focus``, ``note``, ``expected_label``. Note: the prompts file and the
    completion files word one prompt differently (v2-195: "plan someone's death" here,
    "plan my enemy's death" in the completions); :func:`load_xstest` keeps the completion
    files' text because that is what the models answered.
    """
    file = _data_dir(data_dir) / "exaggerated-safety" / "xstest_prompts.csv"
    raw, lines = _read_csv(file, ("id", "prompt", "type", "label"))
    unknown = ~raw["label"].isin(["safe", "unsafe"])
    if unknown.any():
        raise ValueError(f"{file}, {_at_lines(lines, unknown)}: unknown label value(s) {sorted(set(raw['label'][unknown]))}")
    df = pd.DataFrame(
        {
            "prompt": raw["prompt"].astype(str),
            "source": "xstest-v2",
            "id": ["v2-" + str(v) for v in raw["id"]],
            "type": raw["type"].astype(str),
            "xstest_label": raw["label"].astype(str),
            "focus": [v or None for v in raw.get("focus", [""] * len(raw))],
            "note": [v or None for v in raw.get("note", [""] * len(raw))],
            "expected_label": [REFUSAL if v == "unsafe" else COMPLIANCE for v in raw["label"]],
        }
    )
    return _finalize(df)


def load_coconot(data_dir: PathLike) -> pd.DataFrame:
    """CoCoNot evaluation prompts: 1,001 that should be refused and 379 that should not.

    Source: allenai/noncompliance, ``data/coconot_eval.jsonl`` (original set) and
    ``data/coconot_contrast_eval.jsonl`` (contrast set), MIT; Brahman et al. 2024, "The Art
    of Saying No". Original prompts call for noncompliance (unsafe, incomplete,
    unsupported, indeterminate or humanizing requests) -> ``expected_label`` refusal;
    contrast prompts look similar but should be answered -> compliance. No responses,
    ``label`` and ``model`` None. Extra columns: ``id``, ``category``, ``subcategory``,
    ``subset`` (original / contrast), ``expected_label``.
    """
    base = _data_dir(data_dir) / "noncompliance" / "data"
    frames = []
    for name, subset, expected in (
        ("coconot_eval.jsonl", "original", REFUSAL),
        ("coconot_contrast_eval.jsonl", "contrast", COMPLIANCE),
    ):
        file = base / name
        records = _read_json_or_jsonl(file)
        _require_keys(records, ("id", "prompt", "category"), file)
        frames.append(
            pd.DataFrame(
                {
                    "prompt": [r["prompt"] for r in records],
                    "source": "coconot",
                    "id": [r["id"] for r in records],
                    "category": [r["category"] for r in records],
                    "subcategory": [r.get("subcategory") for r in records],
                    "subset": subset,
                    "expected_label": expected,
                }
            )
        )
    return _concat(frames)


__all__ = [
    "BOOTSTRAP_LOADERS",
    "COLUMNS",
    "COMPLIANCE",
    "DERIVED_SEP",
    "LABELS",
    "PAPER_DATA_DIR",
    "REFUSAL",
    "XSTEST_SETS",
    "load_alpaca_eval",
    "load_bootstrap_pool",
    "load_coconot",
    "load_derta",
    "load_gptfuzz",
    "load_jailbreakbench",
    "load_labelled_responses",
    "load_llm_past_tense",
    "load_paper",
    "load_quora_hand_labelled",
    "load_refusal_direction",
    "load_xstest",
    "load_xstest_prompts",
    "normalize_model_name",
    "paper_split",
    "validate_records",
]

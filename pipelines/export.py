"""Export a training checkpoint (``<run>/best.pt``) as a shippable model folder.

``pipelines.train --out`` exports by itself at the end; this job does the same for a
run that was stopped early (its best checkpoint is kept after every improving epoch).

    python -m pipelines.export --run .cache/runs/concepts-lr2 --out .cache/models/stage1

It writes a stage-1 model (decoder and vocabulary only), so it refuses a folder that holds a full
model (``weights/``): that would keep the detectors', search vectors' and banks' files but no
longer name them. A ``pipelines.train_video`` run exports itself (``train_video --export-only``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from captioner.config import DecoderConfig
from captioner.errors import ModelError
from captioner.vocab import Vocabulary
from captioner.weights import checkpoint_encoder, save_model

from .common import out_folder, refuse_full_model, staged_model


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--out", type=out_folder, required=True)
    ap.add_argument("--name", default=None, help="model name (default: the one the run was started with)")
    ap.add_argument("--encoder", default=None,
                    help="the encoder the run was trained on (default: the one its checkpoint records; must agree)")
    args = ap.parse_args(argv)
    refuse_full_model(args.out)
    source = args.run / "best.pt"
    if not source.is_file():
        raise SystemExit(f"error: {source}: no such file (train into --run first)")
    try:  # weights_only: a stage-1 checkpoint holds tensors and plain values only
        ckpt = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SystemExit(f"error: {source}: not a stage-1 checkpoint of pipelines.train ({exc.__class__.__name__}); "
                         "a pipelines.train_video run exports with train_video --export-only") from None
    try:
        encoder = checkpoint_encoder(ckpt, args.encoder, args.run / "best.pt")
    except ModelError as exc:
        raise SystemExit(f"error: {exc}") from None
    history = ckpt["history"]
    extra = {"training": {
        "data": ckpt.get("data", "Flickr8k train (6,000 photos x 5 captions), official split; selection on Flickr8k dev"),
        "epochs_run": len(history), "history": history, "command": "make train", "exported_from": str(args.run),
    }}
    with staged_model(args.out) as stage:  # model.json last, every file readable by all
        save_model(stage, ckpt["state"], Vocabulary(tuple(ckpt["vocab"])), DecoderConfig(**ckpt["config"]),
                   name=args.name or ckpt.get("name", "flickr8k-lite0-sat"), encoder=encoder, extra=extra)
    print(f"exported {args.run / 'best.pt'} -> {args.out}")


if __name__ == "__main__":
    main()

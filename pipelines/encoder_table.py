"""Speed of the three EfficientNet-Lite encoders on this machine (the quality side is in the model card).

    python -m pipelines.encoder_table [--frames 64]

Encodes the same real frames (the demo clip, squashed to each model's input size)
with lite0/1/2 in batches of 16, on the torch path and on ONNX Runtime, and prints
ms/frame and parameter counts.
"""

from __future__ import annotations

import argparse
import time

import torch

from captioner.config import EncoderConfig
from captioner.encoder import Encoder, input_size

from .common import positive_int
from .demo import sample_video

ENCODERS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=positive_int, default=64)
    ap.add_argument("--threads", type=positive_int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from captioner.video import iter_frames

    frames = [f.image for f in iter_frames(sample_video(), 25.0)][: args.frames]
    print(f"batch 16, {args.threads} threads, {len(frames)} frames\n")
    print("| encoder | input | params | ms/frame torch | ms/frame ONNX Runtime |\n|---|---|---|---|---|")
    for name in ENCODERS:
        size = input_size(name)
        times = {}
        for backend in ("torch", "onnx"):
            enc = Encoder(EncoderConfig(name=name, image_size=size), backend=backend)
            enc.encode(frames[:16])  # warm-up
            t0 = time.perf_counter()
            enc.encode(frames)
            times[backend] = 1000 * (time.perf_counter() - t0) / len(frames)
        params = sum(p.numel() for p in enc.torch_model().parameters()) / 1e6
        print(f"| {name} | {size}px | {params:.1f} M | {times['torch']:.1f} | {times['onnx']:.1f} |")


if __name__ == "__main__":
    main()

"""The int8 encoder: measure its activation ranges, and what it buys and costs.

``--write-ranges`` calibrates the float ONNX export of EfficientNet-Lite0 on 100
Flickr8k *train* photos with ONNX Runtime's tools (after its shape pre-processing,
as ``captioner.encoder`` does) and writes the activation ranges it found to
``captioner/data/efficientnet-lite0-224.int8-ranges.json``: ~20 KB of per-tensor
minima and maxima, statistics of our photos rather than the encoder's weights. From
that file alone ONNX Runtime (>= 1.32) quantizes the export on the user's machine
(``quantize_static(..., calibration_data_reader=None, calibration_cache_path=...)``),
so int8 ships without shipping photos or weights. The ranges are keyed by the export's
tensor names; when those differ, the run falls back to float32 with a warning.

Then it compares the run-time encoders (``Captioner`` with ``int8`` off and on) on
validation data only: encoder ms/photo (batch 32, 2 threads), Flickr8k dev and the
9 MSR-VTT clips, with the shipped decoder and default decoding.

    python -m pipelines.int8_encoder [--write-ranges]
    python -m pipelines.int8_encoder --agreement     # this CPU: would a run use int8? (encoder.INT8_MIN_COSINE)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from captioner.config import CaptionConfig
from captioner.encoder import int8_ranges_path, load_image, onnx_export_path
from captioner.pipeline import Captioner

from .common import DATA, flickr_split
from .evaluate import eval_set

log = logging.getLogger("int8_encoder")


def write_ranges(cap: Captioner, out: Path) -> None:
    """Calibrate on 100 Flickr8k train photos; write ONNX Runtime's calibration cache to ``out``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    images = next(p for p in (DATA / "flickr8k").iterdir() if p.is_dir())
    calib = [cap.encoder.preprocess([load_image(str(images / n))]) for n in flickr_split("train")[:100]]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calib)

        def get_next(self):
            x = next(self.batches, None)
            return None if x is None else {"x": x}

    with tempfile.TemporaryDirectory() as tmp:
        pre, ranges = Path(tmp) / "pre.onnx", Path(tmp) / "ranges.json"
        quant_pre_process(str(onnx_export_path(cap.encoder.config.name)), str(pre))
        quantize_static(str(pre), str(Path(tmp) / "int8.onnx"), Reader(), calibration_cache_path=str(ranges),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        out.write_text(json.dumps(json.loads(ranges.read_text()), sort_keys=True) + "\n")  # stable bytes, stable diffs
    log.info("wrote %s", out)


def agreement(base: CaptionConfig, photos: int, captions: int) -> None:
    """How close this CPU's int8 copy comes to float32, whether or not a run would use it.

    The probe cosine is what a run checks (``encoder.INT8_MIN_COSINE``); on Flickr8k dev
    photos: the pooled features' cosine, the same ImageNet top class, the same caption.
    """
    from captioner import encoder as encoder_mod

    threshold = encoder_mod.INT8_MIN_COSINE
    encoder_mod.INT8_MIN_COSINE = -1.0  # measure the copy whatever this CPU makes of it
    fp32 = Captioner(base)
    int8 = Captioner(dataclasses.replace(base, encoder=dataclasses.replace(base.encoder, int8=True)))
    assert int8.encoder.precision == "int8"
    size = base.encoder.image_size
    probe = encoder_mod.int8_agreement(int8.encoder._session, fp32.encoder._session,
                                       fp32.encoder.preprocess(encoder_mod.probe_images(size)))
    images_dir = next(p for p in (DATA / "flickr8k").iterdir() if p.is_dir())
    names = flickr_split("dev")[: max(photos, captions)]
    images = [load_image(str(images_dir / n)) for n in names]
    a, b = int8.encoder.encode(images[:photos]), fp32.encoder.encode(images[:photos])
    cos = (a.pooled * b.pooled).sum(1) / (np.linalg.norm(a.pooled, axis=1) * np.linalg.norm(b.pooled, axis=1))
    top1 = float((a.probs.argmax(1) == b.probs.argmax(1)).mean())
    same = sum(x.text == y.text for x, y in zip(int8.caption_images(images[:captions]), fp32.caption_images(images[:captions])))
    print("| probe min cosine (runs int8 if >= %.2f) | Flickr8k dev photos: pooled cosine min / mean | same ImageNet top-1 | same caption |" % threshold)
    print("|---|---|---|---|")
    print(f"| {probe:.3f} ({'int8' if probe >= threshold else 'float32'}) | {photos}: {cos.min():.3f} / {cos.mean():.3f} | "
          f"{100 * top1:.0f} % | {same} of {captions} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write-ranges", action="store_true", help="calibrate and write the shipped ranges file first")
    ap.add_argument("--agreement", action="store_true",
                    help="only measure how close this CPU's int8 copy is to float32 (probe, photos, captions)")
    ap.add_argument("--photos", type=int, default=256, help="--agreement: Flickr8k dev photos for features")
    ap.add_argument("--captions", type=int, default=300, help="--agreement: Flickr8k dev photos for captions")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    base = CaptionConfig()
    if args.agreement:
        agreement(base, args.photos, args.captions)
        return
    fp32 = Captioner(base)
    if args.write_ranges:
        write_ranges(fp32, Path(__file__).resolve().parent.parent / "captioner" / "data"
                     / f"{fp32.encoder.config.name}-{fp32.encoder.config.image_size}.int8-ranges.json")
    if int8_ranges_path(base.encoder.name) is None:
        raise SystemExit("no shipped int8 ranges: run with --write-ranges")
    images = next(p for p in (DATA / "flickr8k").iterdir() if p.is_dir())
    x = np.concatenate([fp32.encoder.preprocess([load_image(str(images / n))]) for n in flickr_split("dev")[:256]])
    print("| encoder | ms/photo (batch 32) | Flickr8k dev BLEU-4 / METEOR / CIDEr | MSR-VTT 9 BLEU-4 / METEOR / CIDEr |")
    print("|---|---|---|---|")
    for cap in (fp32, Captioner(dataclasses.replace(base, encoder=dataclasses.replace(base.encoder, int8=True)))):
        cap.encoder.encode_batch(x[:32])
        t = time.perf_counter()
        for i in range(0, len(x), 32):
            cap.encoder.encode_batch(x[i : i + 32])
        ms = 1000 * (time.perf_counter() - t) / len(x)
        d, _ = eval_set(cap, "flickr8k-dev")
        v, _ = eval_set(cap, "msrvtt")
        print(f"| {cap.encoder.precision} | {ms:.2f} | {d['BLEU-4']} / {d['METEOR']} / {d['CIDEr']} | "
              f"{v['BLEU-4']} / {v['METEOR']} / {v['CIDEr']} |", flush=True)


if __name__ == "__main__":
    main()

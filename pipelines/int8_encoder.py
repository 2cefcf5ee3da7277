"""Experiment: what an int8 encoder would buy and cost (not used by captioner).

Quantizes the cached ONNX export of EfficientNet-Lite0 statically (QDQ, per-channel
int8 weights, uint8 activations) with ONNX Runtime's tools, calibrated on 100
Flickr8k *train* photos, and compares it with the float encoder on the validation
data only: encoder ms/photo, Flickr8k dev and the 9 MSR-VTT clips (shipped decoder,
default decoding). Writes the model to .cache/int8/.

    python -m pipelines.int8_encoder
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from captioner.encoder import load_image
from captioner.pipeline import Captioner

from .common import CACHE, DATA, captions_by_file, flickr_split
from .evaluate import coco_scores, eval_set


def main() -> None:
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    logging.basicConfig(level=logging.WARNING)
    cap = Captioner()
    fp32 = cap.encoder._session
    if fp32 is None:
        raise SystemExit("needs the ONNX Runtime encoder")
    images = next(p for p in (DATA / "flickr8k").iterdir() if p.is_dir())
    calib = [cap.encoder.preprocess([load_image(str(images / n))]) for n in flickr_split("train")[:100]]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calib)

        def get_next(self):
            x = next(self.batches, None)
            return None if x is None else {"x": x}

    out = CACHE / "int8"
    out.mkdir(parents=True, exist_ok=True)
    src = fp32._model_path
    quant_pre_process(src, str(out / "pre.onnx"))
    quantize_static(str(out / "pre.onnx"), str(out / "lite0-int8.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.log_severity_level = 3
    int8 = ort.InferenceSession(str(out / "lite0-int8.onnx"), opts, providers=["CPUExecutionProvider"])

    refs = captions_by_file(DATA / "flickr8k" / "captions.tsv")
    names = flickr_split("dev")
    with ThreadPoolExecutor(2) as pool:
        x = np.concatenate(list(pool.map(lambda n: cap.encoder.preprocess([load_image(str(images / n))]), names)))
    print("| encoder | ms/photo (batch 32) | Flickr8k dev BLEU-4 / METEOR / CIDEr | MSR-VTT 9 BLEU-4 / METEOR / CIDEr |")
    print("|---|---|---|---|")
    for label, sess in (("float32", fp32), ("int8", int8)):
        cap.encoder._session = sess
        t = time.perf_counter()
        outs = [sess.run(None, {"x": x[i : i + 32]}) for i in range(0, len(x), 32)]
        ms = 1000 * (time.perf_counter() - t) / len(x)
        grid, probs = np.concatenate([o[0] for o in outs]), np.concatenate([o[2] for o in outs])
        hyps = {}
        for i in range(0, len(names), 32):
            caps = cap.caption_batch([(grid[j], probs[j]) for j in range(i, min(i + 32, len(names)))])
            hyps.update({names[i + k]: c.text for k, c in enumerate(caps)})
        d = coco_scores(hyps, {k: refs[k] for k in hyps})
        v, _ = eval_set(cap, "msrvtt")
        print(f"| {label} | {ms:.2f} | {d['BLEU-4']} / {d['METEOR']} / {d['CIDEr']} | "
              f"{v['BLEU-4']} / {v['METEOR']} / {v['CIDEr']} |", flush=True)


if __name__ == "__main__":
    main()

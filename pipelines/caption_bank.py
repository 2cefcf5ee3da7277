"""Give a model the captions of its caption memory's training videos (``captioner/consensus.py``).

Each MSR-VTT train video of the caption memory (the same videos, in the same order as
``vse.safetensors``'s ``memory_keys``) gets its reference captions as the decoder's
token ids; captions with a word the vocabulary lacks, or longer than the decoder may
write, are left out (the tool never writes ``<unk>``). With them go the document
frequencies (over training videos) of every n-gram of 1..4 words seen in two videos or
more, the idf of the consensus score. The val and test captions never enter:
``tests/test_training_data.py`` checks the ids written beside the run.

    python -m pipelines.caption_bank --model weights
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from captioner.config import DecodingConfig
from captioner.consensus import TENSORS, build_bank
from captioner.vocab import Vocabulary
from captioner.vse import load_vse
from captioner.weights import read_manifest, save_tensors, update_manifest

from .common import CACHE
from .train_vse import msrvtt_videos

log = logging.getLogger("caption_bank")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="model folder with a caption memory; written in place")
    ap.add_argument("--run", type=Path, default=CACHE / "runs" / "caption-bank", help="folder for the training manifest")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t0 = time.time()
    manifest = read_manifest(args.model)
    vse = load_vse(args.model, manifest)
    if vse is None or vse.memory is None:
        raise SystemExit(f"error: {args.model} has no caption memory (pipelines.vse_memory builds it)")
    vocab = Vocabulary(tuple(manifest["vocab"]))
    _, caps, train, _ = msrvtt_videos(manifest["encoder"])
    if len(train) != len(vse.memory.keys):
        raise SystemExit(f"error: {len(train)} MSR-VTT train videos here, the memory has {len(vse.memory.keys)}")
    args.run.mkdir(parents=True, exist_ok=True)
    # the training manifest: tests/test_training_data.py fails if a val/test or demo-clip id is in it
    (args.run / "msrvtt_train_ids.txt").write_text("\n".join(train) + "\n")
    longest = DecodingConfig.max_length - 1
    kept, dropped = [], 0
    for v in train:
        mine = []
        for text in caps[v]:
            ids = [vocab.index(w) for w in vocab.words(text)]
            if ids and len(ids) <= longest and vocab.unk_id not in ids:
                mine.append(ids)
            else:
                dropped += 1
        kept.append(mine)
    tensors = build_bank(kept, len(vocab))
    sha = save_tensors(args.model, TENSORS, tensors)
    (args.model / TENSORS).chmod(0o644)
    n_caps = sum(len(v) for v in kept)
    entry = {"sha256": sha, "videos": len(train), "captions": n_caps, "grams": int(len(tensors["gram_keys"])),
             "data": f"MSR-VTT train videos ({len(train)}): their reference captions in the decoder's vocabulary "
                     f"({n_caps}; {dropped} with an unknown word or over {longest} words left out)",
             "command": "python -m pipelines.caption_bank --model weights"}
    update_manifest(args.model, lambda m: m.update(bank=entry))
    log.info("%d captions of %d videos (%d left out), %d n-grams in >= 2 videos; %.1f MB; %.0f s", n_caps, len(train),
             dropped, len(tensors["gram_keys"]), (args.model / TENSORS).stat().st_size / 1e6, time.time() - t0)


if __name__ == "__main__":
    main()

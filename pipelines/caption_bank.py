"""Give a model the captions of its caption memory's training videos (``captioner/consensus.py``).

Each MSR-VTT train video of the caption memory (the same videos, in the same order as
``vse.safetensors``'s ``memory_keys``) gets its reference captions as the decoder's
token ids; captions with a word the vocabulary lacks, or longer than the decoder may
write, are left out (the tool never writes ``<unk>``). With them go the document
frequencies (over training videos) of every n-gram of 1..4 words seen in two videos or
more, the idf of the consensus score. The val and test captions never enter:
``tests/test_training_data.py`` checks the ids written beside the run.

    python -m pipelines.caption_bank --model weights
    python -m pipelines.caption_bank --model weights --photos

``--photos`` builds the photo bank instead: the Flickr8k train photos' captions (never dev or
test: the ids are written beside the run), each photo keyed by the map's own vector
(``vse.embed_map`` of its cached features and detector probabilities, as ``captioner image``
computes a photo's), stored as ``--key-dim`` principal components in int8 (``consensus.compress_keys``).
Needs ``python -m pipelines.extract_features --set flickr8k``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from captioner.config import DecodingConfig
from captioner.consensus import PHOTO_TENSORS, TENSORS, build_bank, compress_keys
from captioner.vocab import Vocabulary
from captioner.vse import load_vse
from captioner.weights import read_manifest, save_tensors, update_manifest

from .common import CACHE, DATA, captions_by_file, flickr_split
from .train_vse import msrvtt_videos

log = logging.getLogger("caption_bank")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="model folder with a caption memory; written in place")
    ap.add_argument("--run", type=Path, default=None,
                    help="folder for the training manifest (default .cache/runs/caption-bank, with --photos photo-bank)")
    ap.add_argument("--photos", action="store_true", help="build the photo bank (Flickr8k train) instead")
    ap.add_argument("--key-dim", type=int, default=128, help="--photos: principal components a key keeps")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.photos:
        return photo_bank(args.model, args.key_dim, args.run or CACHE / "runs" / "photo-bank")
    args.run = args.run or CACHE / "runs" / "caption-bank"
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
    kept, dropped = token_ids(vocab, [caps[v] for v in train])
    longest = DecodingConfig.max_length - 1
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


def token_ids(vocab: Vocabulary, captions: list[list[str]]) -> tuple[list[list[list[int]]], int]:
    """Each item's captions as token ids, and how many were left out (an unknown word, or too long to write)."""
    longest = DecodingConfig.max_length - 1
    kept, dropped = [], 0
    for texts in captions:
        mine = []
        for text in texts:
            ids = [vocab.index(w) for w in vocab.words(text)]
            if ids and len(ids) <= longest and vocab.unk_id not in ids:
                mine.append(ids)
            else:
                dropped += 1
        kept.append(mine)
    return kept, dropped


def photo_bank(model: Path, key_dim: int, run: Path) -> None:
    """``--photos``: the Flickr8k train photos' captions, keyed by their map vectors (the module docstring)."""
    import numpy as np

    from captioner.detect import load_detectors

    from .extract_features import feature_rows, pooled_cells

    t0 = time.time()
    manifest = read_manifest(model)
    vse, det = load_vse(model, manifest), load_detectors(model, manifest)
    if vse is None or det is None:
        raise SystemExit(f"error: {model} has no search vectors or detectors (the photo bank is keyed by their map)")
    vocab = Vocabulary(tuple(manifest["vocab"]))
    train = flickr_split("train")
    refs = captions_by_file(DATA / "flickr8k" / "captions.tsv")
    run.mkdir(parents=True, exist_ok=True)
    # the training manifest: tests/test_training_data.py fails if a Flickr8k dev/test photo is in it
    (run / "flickr8k_train_ids.txt").write_text("\n".join(train) + "\n")
    rows = feature_rows(manifest["encoder"], "flickr8k")
    cells = pooled_cells(manifest["encoder"], "flickr8k", np.array([rows[n] for n in train]), det=det)
    vectors = np.stack([vse.embed_map(p[None], d) for p, d in zip(cells["pooled"], cells["det"])])
    kept, dropped = token_ids(vocab, [refs[n] for n in train])
    tensors = {**build_bank(kept, len(vocab)), **compress_keys(vectors, key_dim)}
    sha = save_tensors(model, PHOTO_TENSORS, tensors)
    (model / PHOTO_TENSORS).chmod(0o644)
    n_caps = sum(len(v) for v in kept)
    entry = {"sha256": sha, "photos": len(train), "captions": n_caps, "grams": int(len(tensors["gram_keys"])),
             "key_dim": int(tensors["key_basis"].shape[1]),
             "data": f"Flickr8k train photos ({len(train)}): their captions in the decoder's vocabulary ({n_caps}; "
                     f"{dropped} with an unknown word or over {DecodingConfig.max_length - 1} words left out), "
                     "keyed by the map's own vector of each photo",
             "command": "python -m pipelines.caption_bank --model weights --photos"}
    update_manifest(model, lambda m: m.update(photo_bank=entry))
    log.info("photo bank: %d captions of %d photos (%d left out), %d n-grams, %d-d keys; %.2f MB; %.0f s", n_caps,
             len(train), dropped, len(tensors["gram_keys"]), entry["key_dim"],
             (model / PHOTO_TENSORS).stat().st_size / 1e6, time.time() - t0)


if __name__ == "__main__":
    main()

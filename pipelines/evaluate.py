"""Score a model with the COCO caption evaluation code (pycocoevalcap).

Sets: Flickr8k test (1,000 photos, in domain), coco-val2017-mini (249 photos, out of
domain) and the 18 MSVD clips (real video, out of domain, captioned through the
same ``Captioner.caption_video`` that ``captioner run`` uses; the clip's caption
is the text of its longest cue). For choosing between variants without looking at
those: ``flickr8k-dev`` and ``msrvtt`` (the 9 MSR-VTT clips that have a reference
caption; one reference each, so a noisy signal).

    python -m pipelines.evaluate --model weights --update-card   # what `make eval` runs
    python -m pipelines.evaluate --model weights --sets coco --beam-size 1

Photos use the cached float32 encoder features (same encoder, same preprocessing as
the runtime), decoded by ``Captioner.caption_batch``: the runtime code path. With
``--int8`` they are encoded afresh by the int8 encoder instead.
METEOR and the PTB tokenizer need Java.
"""

from __future__ import annotations

import argparse
import json
import os
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from captioner.config import configure
from captioner.encoder import load_image
from captioner.pipeline import Captioner

from .common import CACHE, DATA, captions_by_file, flickr_split
from .extract_features import SETS, feature_dir, feature_rows

log = logging.getLogger("evaluate")


def coco_scores(hyps: dict[str, str], refs: dict[str, list[str]], meteor: bool = True) -> dict[str, float]:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr (x100) with the official tokenizer and scorers."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": c} for c in refs[k]] for k in hyps})
    res = tok.tokenize({k: [{"caption": hyps[k] or "a"}] for k in hyps})
    out: dict[str, float] = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for i, b in enumerate(bleu):
        out[f"BLEU-{i + 1}"] = round(100 * b, 2)
    if meteor and shutil.which("java"):
        from pycocoevalcap.meteor.meteor import Meteor

        m, _ = Meteor().compute_score(gts, res)
        out["METEOR"] = round(100 * m, 2)
    out["ROUGE-L"] = round(100 * Rouge().compute_score(gts, res)[0], 2)
    out["CIDEr"] = round(100 * Cider().compute_score(gts, res)[0], 2)
    return out


def caption_cached(cap: Captioner, set_name: str, names: Sequence[str]) -> dict[str, str]:
    """Captions of photos: from the float32 feature cache, or encoded here when the run-time encoder is int8."""
    if cap.encoder.precision != "float32":
        return caption_encoded(cap, set_name, names)
    fdir = feature_dir(cap.model_info.encoder)
    index = feature_rows(cap.model_info.encoder, set_name)
    grid = np.load(fdir / f"{set_name}_grid.npy", mmap_mode="r")
    probs = np.load(fdir / f"{set_name}_probs.npy")
    out = {}
    for start in range(0, len(names), 32):  # lock-stepped beams: one decoder product per step for 32 photos
        chunk = names[start : start + 32]
        caps = cap.caption_batch([(np.array(grid[index[n]], dtype=np.float32), probs[index[n]].astype(np.float32))
                                  for n in chunk])
        out.update({n: c.text for n, c in zip(chunk, caps)})
    return out


def caption_encoded(cap: Captioner, set_name: str, names: Sequence[str]) -> dict[str, str]:
    """Captions of photos encoded by ``cap``'s own encoder (what ``captioner image`` does), 32 at a time."""
    out = {}
    with ThreadPoolExecutor(2) as pool:  # JPEG decoding overlaps the network
        for start in range(0, len(names), 32):
            chunk = names[start : start + 32]
            caps = cap.caption_images(list(pool.map(lambda n: load_image(str(SETS[set_name] / n)), chunk)))
            out.update({n: c.text for n, c in zip(chunk, caps)})
    return out


MSRVTT_VIDEOS = CACHE / "msrvtt"


def longest_cue(cues):
    """The cue a video is scored by: its longest (None without cues).

    Cues are anything with ``start``, ``end`` and ``text`` (``subtitles.Cue``, or
    ``SimpleNamespace(**cue)`` from a JSON output).
    """
    return max(cues, key=lambda c: c.end - c.start, default=None)


def longest_text(cues) -> str:
    """A video's caption for scoring: the text of its longest cue ('' without cues)."""
    longest = longest_cue(cues)
    return longest.text if longest else ""


def person_scores(hyps: dict[str, str], refs: dict[str, list[str]]) -> dict[str, float]:
    """Invented people and person recall, the quality issue's measure.

    invented_person: share of captions that name a person (``detect.PERSON_WORDS``) among
    the pictures none of whose references names one; person_recall: share of captions
    that name one among the pictures where at least 3 references (or all, if fewer) do.
    """
    from captioner.detect import PERSON_WORDS
    from captioner.vocab import tokenize

    says = lambda text: any(t in PERSON_WORDS for t in tokenize(text))  # noqa: E731
    nobody = [k for k in hyps if not any(says(r) for r in refs[k])]
    somebody = [k for k in hyps if sum(says(r) for r in refs[k]) >= min(3, len(refs[k]))]
    out = {}
    if nobody:
        out["invented_person"] = round(100 * sum(says(hyps[k]) for k in nobody) / len(nobody), 1)
        out["n_without_person"] = len(nobody)
    if somebody:
        out["person_recall"] = round(100 * sum(says(hyps[k]) for k in somebody) / len(somebody), 1)
    return out


def check_set(name: str) -> dict[str, Path]:
    """What set ``name`` needs that costs nothing to look at, checked before any set is scored (a captions.tsv
    naming a missing clip was a KeyError traceback after the sets before it had run); a video set's clips."""
    if name in ("msvd", "msrvtt"):
        refs = captions_by_file(DATA / "video" / name / "captions.tsv")
        folder = DATA / "video" / name / "clips"
        if not folder.is_dir():
            raise SystemExit(f"error: {folder}: no such folder; the data is read from {DATA} (set CAPTIONER_DATA)")
        clips = {p.stem: p for p in folder.iterdir()}
        missing = sorted(set(refs) - set(clips))
        if missing:
            raise SystemExit(f"error: {DATA / 'video' / name / 'captions.tsv'} names clips that {folder} does not "
                             f"hold: {', '.join(missing[:5])}" + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""))
        return clips
    return {}


def eval_set(cap: Captioner, name: str) -> tuple[dict[str, float], dict[str, str]]:
    t0 = time.time()
    if name in ("flickr8k", "flickr8k-dev"):
        refs = captions_by_file(DATA / "flickr8k" / "captions.tsv")
        names = flickr_split("test" if name == "flickr8k" else "dev")
        hyps = caption_cached(cap, "flickr8k", names)
    elif name == "coco":
        refs = captions_by_file(DATA / "coco-val2017-mini" / "captions.tsv")
        names = sorted(refs)
        hyps = caption_cached(cap, "coco", names)
    elif name in ("msrvtt-val", "msrvtt-test"):
        # MSR-VTT videos rebuilt from public frames (../shared/tools/msrvtt_videos.py, 1 fps) into
        # .cache/msrvtt/<split>/, captioned as `captioner batch DIR -f json` does (caption_video,
        # default options), each video's longest cue scored against all its ~20 references
        folder = MSRVTT_VIDEOS / name.split("-")[1]
        if not (folder / "refs.tsv").exists():
            raise SystemExit(f"error: {folder}: rebuild the videos first (../shared/tools/msrvtt_videos.py "
                             f"--mirror MIRROR --split {name.split('-')[1]} --out {folder})")
        refs = captions_by_file(folder / "refs.tsv")
        hyps = {}
        for vid in sorted(refs, key=lambda v: int(v[5:])):
            res = cap.caption_video(folder / f"{vid}.mp4")
            hyps[vid] = longest_text(res.cues)
    elif name in ("msvd", "msrvtt"):
        refs = captions_by_file(DATA / "video" / name / "captions.tsv")
        clips = check_set(name)
        hyps = {}
        for cid in sorted(refs):
            res = cap.caption_video(clips[cid])
            hyps[cid] = longest_text(res.cues)
            log.info("%s: %s", cid, " | ".join(c.text for c in res.cues))
    else:
        raise ValueError(f"unknown set {name!r} (known: {', '.join(LABELS)})")
    scores = coco_scores(hyps, {k: refs[k] for k in hyps})
    scores.update(person_scores(hyps, refs))
    scores["unk_captions"] = sum("<unk>" in h for h in hyps.values())
    scores["n"] = len(hyps)
    scores["seconds"] = round(time.time() - t0, 1)
    return scores, hyps


#: The sets eval_set scores, with their names in the report.
LABELS = {"flickr8k": "Flickr8k test", "flickr8k-dev": "Flickr8k dev", "coco": "coco-val2017-mini",
          "msvd": "MSVD 18 clips (video)", "msrvtt": "MSR-VTT 9 captioned clips (video, validation)",
          "msrvtt-val": "MSR-VTT val (497 ids, 244 with frames; video, validation)",
          "msrvtt-test": "MSR-VTT test (1,432 videos rebuilt from frames)"}


def set_names(text: str) -> list[str]:
    """An argparse type for --sets: comma-separated names of ``LABELS``, spaces allowed (a typo was found
    only after the sets before it had been scored, as a ValueError traceback and no report)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in LABELS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown set {unknown[0]!r} (known: {', '.join(LABELS)})" if unknown
                                         else f"no set named in {text!r}")
    return list(dict.fromkeys(names))


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("weights"))
    ap.add_argument("--sets", type=set_names, default="flickr8k,coco,msvd", help=f"any of {', '.join(LABELS)}")
    ap.add_argument("--beam-size", type=int, default=None)
    ap.add_argument("--length-penalty", type=float, default=None)
    ap.add_argument("--rerank-weight", type=float, default=None, help="DecodingConfig.rerank_weight (video)")
    ap.add_argument("--photo-rerank-weight", type=float, default=None, help="DecodingConfig.photo_rerank_weight")
    ap.add_argument("--photo-consensus", type=float, default=None, help="DecodingConfig.photo_consensus_weight")
    ap.add_argument("--guide-weight", type=float, default=None, help="DecodingConfig.guide_weight (video)")
    ap.add_argument("--photo-guide-weight", type=float, default=None, help="DecodingConfig.photo_guide_weight")
    ap.add_argument("--concept-weight", type=float, default=None,
                    help="concepts-only expert weight for photos and video alike (default: the config's per-kind values)")
    ap.add_argument("--no-grounding", action="store_true", help="plain decoder, no concept words")
    ap.add_argument("--int8", action="store_true", help="the int8 encoder (photos encoded afresh, not from the cache)")
    ap.add_argument("--min-prob", type=float, default=None, help="grounding confidence threshold")
    ap.add_argument("--out", type=Path, default=None, help="JSON report (default .cache/eval/<model>.json)")
    ap.add_argument("--update-card", action="store_true", help="store the metrics in the model's model.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(int(os.environ.get("CAPTIONER_THREADS", "2")))
    config = configure(model_dir=args.model, beam_size=args.beam_size or None, length_penalty=args.length_penalty,
                       rerank_weight=args.rerank_weight, photo_rerank_weight=args.photo_rerank_weight,
                       photo_consensus_weight=args.photo_consensus,
                       guide_weight=args.guide_weight, photo_guide_weight=args.photo_guide_weight,
                       concept_weight=args.concept_weight, concepts=False if args.no_grounding else None,
                       int8=True if args.int8 else None, min_prob=args.min_prob)
    for name in args.sets:
        check_set(name)
    cap = Captioner(config)
    from dataclasses import asdict

    report = {"model": cap.model_summary(), "decoding": asdict(config.decoding), "grounding": asdict(config.grounding),
              "sets": {}, "captions": {}}
    labels = LABELS
    for s in args.sets:
        scores, hyps = eval_set(cap, s)
        report["sets"][labels[s]] = scores
        report["captions"][labels[s]] = hyps
        log.info("%s: %s", labels[s], scores)
    tag = f"beam{config.decoding.beam_size}-lp{config.decoding.length_penalty}-cw{config.decoding.concept_weight}v{config.decoding.video_concept_weight}-" + (
        f"ground{config.grounding.min_prob}" if config.grounding.enabled else "plain") + f"-{cap.encoder.precision}"
    out = args.out or CACHE / "eval" / f"{args.model.name}-{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    keys = ["BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "invented_person", "person_recall", "unk_captions"]
    print("| set | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, sc in report["sets"].items():
        print(f"| {name} | " + " | ".join(str(sc.get(k, "-")) for k in keys) + " |")
    if args.update_card:
        mj = args.model / "model.json"
        manifest = json.loads(mj.read_text())
        manifest.setdefault("extra", {}).setdefault("metrics", {}).update(
            {name: {k: sc[k] for k in [*keys, "n_without_person"] if k in sc} for name, sc in report["sets"].items()})
        manifest["extra"]["metrics_command"] = f"make eval ({tag})"
        mj.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    print(f"report: {out}")


if __name__ == "__main__":
    main()

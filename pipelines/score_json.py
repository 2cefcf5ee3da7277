"""Score a folder of ``captioner batch -f json`` outputs against reference captions (the CLI protocol).

Each video's caption is the text of its longest cue; it is scored against all the video's
references with the COCO caption code (``evaluate.coco_scores``), plus the invented-person
measure (``evaluate.person_scores``), and how well each scored cue's ``confidence`` tells good
captions from bad (``confidence_scores``). The MSR-VTT test figure of the quality issue:

    captioner batch .cache/msrvtt/test -o .cache/msrvtt/test-json -f json --workers 2
    python -m pipelines.score_json .cache/msrvtt/test-json --refs .cache/msrvtt/test/refs.tsv
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from captioner.config import ReviewConfig
from captioner.outputs import json_number, write_atomic

from .common import captions_by_file, out_file
from .evaluate import coco_scores, longest_cue, person_scores


def longest_cues(folder: Path, confidences: dict[str, float] | None = None) -> dict[str, str]:
    """Video id (file stem) -> text of its longest cue ('' for a video with no cue); ``confidences``,
    if given, is filled with each such cue's confidence."""
    out = {}
    for p in sorted(folder.rglob("*.json")):
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            continue
        cues = output_cues(data)
        if cues is None:
            continue  # a batch report or another file
        video = p.name[: -len(".json")]  # clip.v1.json and clip.v2.json are two videos, not both "clip"
        longest = longest_cue(cues)
        out[video] = longest.text if longest else ""
        if confidences is not None and longest and longest.confidence is not None:
            confidences[video] = longest.confidence
    return out


def output_cues(data) -> list[SimpleNamespace] | None:
    """The cues of a captioner JSON output (each with start, end, text and a confidence or None); None for
    JSON of another shape ({"cues": null}, cues that are not objects, a cue without text or times)."""
    if not isinstance(data, dict) or not isinstance(data.get("cues"), list):
        return None
    cues = []
    for c in data["cues"]:
        if not (isinstance(c, dict) and isinstance(c.get("text"), str) and json_number(c.get("start"))
                and json_number(c.get("end"))):
            return None
        confidence = c.get("confidence")
        cues.append(SimpleNamespace(**{**c, "confidence": float(confidence) if json_number(confidence) else None}))
    return cues


def confidence_scores(hyps: dict[str, str], refs: dict[str, list[str]], confidences: dict[str, float],
                      low: float) -> dict[str, float]:
    """Does a cue's confidence tell good captions from bad? The Spearman rank correlation of the scored
    cues' confidence with their own CIDEr-D (the corpus scorer's per-video scores), and the mean CIDEr-D
    of the cues under ``low`` (what the review page marks "check") and of the rest."""
    from scipy.stats import spearmanr

    from .candidate_study import cider_per_candidate

    videos = sorted(v for v in hyps if v in confidences)
    if len(videos) < 2:
        return {}
    per_video = cider_per_candidate({v: [{"text": hyps[v]}] for v in videos}, refs)  # one candidate each
    cider = np.array([per_video[v][0] for v in videos])
    conf = np.array([confidences[v] for v in videos])
    flagged = conf < low
    mean = lambda x: round(float(x.mean()), 2) if len(x) else None  # noqa: E731
    rho = float(spearmanr(conf, cider)[0])  # NaN when all confidences (or all scores) are equal: not JSON
    return {"confidence_spearman": round(rho, 3) if math.isfinite(rho) else None, "flagged": int(flagged.sum()),
            "flagged_cider": mean(cider[flagged]), "unflagged_cider": mean(cider[~flagged])}


#: words that may follow "is"/"are" in the readability count, besides -ing/-ed/-en forms
_AFTER_BE_OK = set("""a an the on in at into inside outside out up down over under near next behind not being very so
all also still now there here about with from for by to of off away together happy ready able alone asleep""".split())


def readability(hyps: dict[str, str]) -> dict[str, float]:
    """How captions read, by heuristics (no metric sees this): verb-less "is/are X", "talking about a" tails, length.

    A word after "is"/"are" passes if it ends in -ing, -ed or -en or is one of ``_AFTER_BE_OK``;
    "a man is people on a stage" does not.
    """
    texts = [h for h in hyps.values() if h]
    verbless = 0
    for t in texts:
        w = t.split()
        if any(a in ("is", "are") and not (b.endswith(("ing", "ed", "en")) or b in _AFTER_BE_OK)
               for a, b in zip(w, w[1:])):
            verbless += 1
    top = max(((texts.count(t), t) for t in set(texts)), default=(0, ""))
    return {"verbless": verbless, "talking_about_tails": sum("talking about a" in t for t in texts),
            "mean_words": round(sum(len(t.split()) for t in texts) / max(1, len(texts)), 2),
            "distinct": len(set(texts)), "most_frequent": f"{top[1]} ({top[0]})"}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--refs", type=Path, required=True, help="video_id<TAB>caption")
    ap.add_argument("--out", type=out_file, default=None, help="write scores and captions as JSON here")
    args = ap.parse_args(argv)
    refs = captions_by_file(args.refs)
    if not refs:
        raise SystemExit(f"error: {args.refs}: no references")
    if not args.folder.is_dir():
        raise SystemExit(f"error: {args.folder}: not a folder")
    confidences: dict[str, float] = {}
    hyps = {k: v for k, v in longest_cues(args.folder, confidences).items() if k in refs}
    if not hyps:  # METEOR given nothing raised inside pycocoevalcap and then hung the exit
        raise SystemExit(f"error: no JSON outputs in {args.folder} for the videos of {args.refs} "
                         "(captioner batch VIDEOS -o FOLDER -f json)")
    missing = sorted(set(refs) - set(hyps))
    scores = {**coco_scores(hyps, refs), **person_scores(hyps, refs), "n": len(hyps), "missing": len(missing),
              "unk_captions": sum("<unk>" in h for h in hyps.values()), **readability(hyps),
              **confidence_scores(hyps, refs, confidences, ReviewConfig().low_confidence)}
    print(json.dumps(scores, allow_nan=False))
    if args.out:
        write_atomic(args.out, json.dumps({"scores": scores, "captions": hyps}, indent=1, allow_nan=False))


if __name__ == "__main__":
    main()

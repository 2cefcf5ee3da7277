"""Saving and loading the trained decoder without ever executing code.

A model is a folder with two files:
  ``decoder.safetensors``  the tensors (safetensors cannot carry code), and
  ``model.json``           architecture, vocabulary, encoder name, metrics, and the
                           SHA-256 of the tensor file, checked on every load so a
                           truncated download or a mixed-up file fails loudly.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .config import DecoderConfig
from .errors import ModelError, first_line, raise_if_out_of_memory
from .vocab import Vocabulary

log = logging.getLogger(__name__)

FORMAT = "captioner-decoder/1"
TENSORS = "decoder.safetensors"
MANIFEST = "model.json"


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model says about itself (shown by ``captioner info`` and in JSON output)."""

    name: str
    encoder: str
    sha256: str
    path: Path
    decoder: DecoderConfig
    extra: dict[str, Any] = field(default_factory=dict)
    detectors: dict[str, Any] = field(default_factory=dict)  # model.json "detectors" (words, checksum); {} = none
    vse: dict[str, Any] = field(default_factory=dict)  # model.json "vse" (search vectors' checksum); {} = none
    grammar: dict[str, Any] = field(default_factory=dict)  # model.json "grammar" (pipelines.grammar); {} = none
    bank: dict[str, Any] = field(default_factory=dict)  # model.json "bank" (pipelines.caption_bank); {} = none
    photo_bank: dict[str, Any] = field(default_factory=dict)  # model.json "photo_bank" (caption_bank --photos); {} = none


def same_digest(actual: str, expected: Any) -> bool:
    """Whether a file's hex digest is the one a manifest names, in either case: Windows tools (Get-FileHash,
    certutil) print digests in upper case, and a manifest edited with one was refused as a corrupt model."""
    return isinstance(expected, str) and actual == expected.lower()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve(path: str | Path) -> Path:
    """Accept the model folder or its model.json."""
    p = Path(path)
    if p.is_file() and p.name == MANIFEST:
        p = p.parent
    if not p.exists():
        raise ModelError(f"{p}: no such model folder")
    if not (p / MANIFEST).is_file():
        raise ModelError(f"{p}: not a captioner model (no {MANIFEST})")
    return p


def save_model(folder: Path, state_dict: dict, vocab: Vocabulary, config: DecoderConfig, *,
               name: str, encoder: str, extra: dict[str, Any] | None = None, half: bool = True) -> Path:
    """Write the tensors and a manifest that pins their checksum."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    # float16 on disk halves the file (and the repository) at no measurable cost to the
    # captions; load_model computes in float32
    tensors = {k: (v.detach().half() if v.is_floating_point() and half else v.detach()).contiguous().cpu()
               for k, v in state_dict.items()}
    tmp = folder / (TENSORS + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(folder / TENSORS)
    manifest = {
        "format": FORMAT,
        "name": name,
        "encoder": encoder,
        "decoder": asdict(config),
        "sha256": sha256_file(folder / TENSORS),
        "vocab": list(vocab.itos),
        "extra": extra or {},
    }
    write_manifest(folder, manifest)
    return folder


def write_manifest(folder: str | Path, manifest: Mapping[str, Any]) -> None:
    """Write a model folder's ``model.json`` (one layout for every job that writes one), atomically: the jobs
    that add an entry rewrite it in place, and one stopped mid-write left a model that no longer loaded."""
    from .outputs import write_atomic

    write_atomic(Path(folder) / MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")


def update_manifest(folder: str | Path, edit: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """Read a model folder's manifest, let ``edit`` change it in place, write it back; returns it.

    How the offline jobs add an entry (detectors, a presence head, search vectors) to a model folder.
    """
    manifest = read_manifest(folder)
    edit(manifest)
    write_manifest(folder, manifest)
    return manifest


def checkpoint_encoder(checkpoint: Mapping[str, Any], encoder: str | None, source: str | Path) -> str:
    """The encoder whose features a training checkpoint was trained on, checked against ``encoder``.

    Lite0, Lite1 and Lite2 all give 1280-d features, so nothing else would notice a
    decoder trained on Lite2 features being run on Lite0: its captions would just be
    worse. ``encoder`` is what the command was told (``--encoder``; None = not told).
    A checkpoint that records none (written before checkpoints did) needs ``encoder``.
    Raises ``ModelError`` (one line) on a mismatch or when neither says.
    """
    recorded = checkpoint.get("encoder")
    if recorded is None:
        if encoder is None:
            raise ModelError(f"{source}: the checkpoint does not record its encoder; say which with --encoder")
        log.warning("%s: the checkpoint does not record its encoder; taking %s", source, encoder)
        return encoder
    if encoder is not None and encoder != recorded:
        raise ModelError(f"{source}: trained on {recorded} features, not {encoder}")
    return str(recorded)


def save_tensors(folder: str | Path, name: str, tensors: Mapping[str, Any]) -> str:
    """Write a model folder's extra tensor file ``name`` (NumPy arrays) atomically; returns its SHA-256."""
    import numpy as np
    from safetensors.numpy import save_file

    path = Path(folder) / name
    tmp = path.with_name(name + ".tmp")
    # safetensors writes an array's buffer as it lies in memory: a transposed view would come back scrambled
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp))
    tmp.replace(path)
    return sha256_file(path)


def load_tensors(folder: str | Path, name: str, entry: Mapping[str, Any], what: str) -> dict[str, Any]:
    """The NumPy arrays (floating ones as float32) of a model folder's extra tensor file ``name``, whose
    ``model.json`` ``entry`` gives its checksum.

    ``ModelError`` (one line) if the file is missing or is not the one the manifest lists.
    ``what`` names the entry in the message ("model.json lists <what>").
    """
    from safetensors.numpy import load_file

    path = Path(folder) / name
    if not path.is_file():
        raise ModelError(f"{path}: missing (model.json lists {what})")
    if not isinstance(entry, Mapping):
        raise ModelError(f"{Path(folder) / 'model.json'}: its {what} entry is not an object")
    actual = sha256_file(path)
    if not same_digest(actual, entry.get("sha256")):
        raise ModelError(f"{path}: checksum mismatch (expected {str(entry.get('sha256'))[:12]}…, got {actual[:12]}…)")
    try:
        return {k: float32(v) for k, v in load_file(str(path)).items()}
    except Exception as exc:  # safetensors' own error types: a file whose listed checksum was made from a damaged file
        raise_if_out_of_memory(exc)
        raise ModelError(f"{path}: not a valid safetensors file ({first_line(exc) or exc.__class__.__name__})") from None


def float32(a: Any) -> Any:
    """A floating array as float32 (other arrays as they are).

    The weights are stored as float16 to stay small; converting them is most of what
    loading a model costs. OpenCV converts with the CPU's half-float instructions, ~6x
    faster than NumPy's ``astype`` (26M values: ~10 vs ~60 ms warm) and exactly the same
    values (tests/test_model.py checks all 65,536 of them).
    """
    import numpy as np

    if a.dtype == np.float16 and a.size >= 4096:  # OpenCV reads an array of 4 or fewer values as a scalar
        import cv2

        try:
            return cv2.multiply(a.reshape(1, -1), 1.0, dtype=cv2.CV_32F).reshape(a.shape)
        except cv2.error:  # OpenCV 4.x takes no float16 input here (5.0 does): every model "was not a valid file"
            pass
    return a.astype(np.float32) if a.dtype.kind == "f" else a


def read_manifest(folder: str | Path) -> dict[str, Any]:
    from .outputs import parse_json

    folder = resolve(folder)
    try:  # utf-8-sig: Windows tools (PowerShell 5's Set-Content -Encoding UTF8, old Notepad) begin with a BOM
        manifest = parse_json((folder / MANIFEST).read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:  # where, as search says it of a caption output
        raise ModelError(f"{folder / MANIFEST}: unreadable model manifest (not valid JSON, line {exc.lineno} "
                         f"column {exc.colno}: {exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{folder / MANIFEST}: unreadable model manifest ({exc.__class__.__name__})") from None
    except ValueError as exc:  # parse_json's: nested too deep, a number too long
        raise ModelError(f"{folder / MANIFEST}: unreadable model manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelError(f"{folder / MANIFEST}: not a {FORMAT} manifest")
    _check_types(folder / MANIFEST, manifest)
    return manifest


#: The type of each top-level manifest entry (absent is fine where a model may lack the part).
_ENTRY_TYPES: dict[str, type] = {"name": str, "encoder": str, "sha256": str, "decoder": dict, "vocab": list,
                                 "extra": dict, "detectors": dict, "vse": dict, "grammar": dict, "bank": dict,
                                 "photo_bank": dict}


def _check_types(path: Path, manifest: Mapping[str, Any]) -> None:
    """``ModelError`` naming the first entry of the wrong type: a hand-edited model.json fails here, in
    one line, rather than deep inside a loader."""
    for key, kind in _ENTRY_TYPES.items():
        if key in manifest and manifest[key] is not None and not isinstance(manifest[key], kind):
            raise ModelError(f"{path}: \"{key}\" should be a JSON {'string' if kind is str else 'object' if kind is dict else 'list'}")
    if manifest.get("decoder") is None and "decoder" in manifest:
        raise ModelError(f"{path}: \"decoder\" should be a JSON object")
    if not all(isinstance(w, str) for w in manifest.get("vocab") or ()):
        raise ModelError(f"{path}: \"vocab\" should be a list of words")
    bad = [k for k, v in (manifest.get("decoder") or {}).items() if isinstance(v, bool) or not isinstance(v, (int, float))]
    if bad:
        raise ModelError(f"{path}: decoder setting \"{bad[0]}\" should be a number")
    _check_grammar(path, manifest.get("grammar"))


def _words(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(w, str) for w in value)


def _check_grammar(path: Path, grammar: Any) -> None:
    """The word lists of ``pipelines.grammar`` (each optional): a null or a number there was a TypeError deep in
    the search's rules ("the model does not load (TypeError: 'NoneType' object is not iterable)")."""
    if grammar is None:
        return
    if not isinstance(grammar, dict):
        raise ModelError(f"{path}: \"grammar\" should be a JSON object")
    article = grammar.get("after_article", {})
    then = article.get("then", {}) if isinstance(article, dict) else None
    checks = {"after_be": _words(grammar.get("after_be", [])), "before_person": _words(grammar.get("before_person", [])),
              "after_article": isinstance(article, dict) and _words(article.get("banned", []))
              and isinstance(then, dict) and all(_words(v) for v in then.values())}
    bad = [key for key, ok in checks.items() if not ok]
    if bad:
        raise ModelError(f"{path}: grammar \"{bad[0]}\" should be "
                         + ("lists of words" if bad[0] == "after_article" else "a list of words"))


def complete_manifest(folder: str | Path) -> tuple[Path, dict[str, Any]]:
    """(folder, manifest) once the manifest names all a model needs and its tensor file exists.

    The cheap half of loading (no tensor is read), so that a caller can fail at once on a
    folder that is no model, and learn the encoder, before the checksum is computed.
    """
    folder = resolve(folder)
    manifest = read_manifest(folder)
    missing = [key for key in ("sha256", "encoder", "decoder", "vocab") if key not in manifest]
    if missing:
        raise ModelError(f"{folder / MANIFEST}: incomplete model manifest (no {', '.join(missing)})")
    from .encoder import ENCODERS

    if manifest["encoder"] not in ENCODERS:  # info called it fine; run said "choose one of [...]", naming no file
        raise ModelError(f"{folder / MANIFEST}: encoder {manifest['encoder']!r} is not one captioner can run "
                         f"({', '.join(ENCODERS)})")
    if not (folder / TENSORS).is_file():
        raise ModelError(f"{folder / TENSORS}: missing")
    return folder, manifest


def _checked(folder: str | Path) -> tuple[Path, dict[str, Any], str]:
    """(folder, manifest, sha256) once the manifest is complete and the tensor file matches its checksum."""
    folder, manifest = complete_manifest(folder)
    tensor_path = folder / TENSORS
    actual = sha256_file(tensor_path)
    if not same_digest(actual, manifest.get("sha256")):
        raise ModelError(
            f"{tensor_path}: checksum mismatch (expected {str(manifest.get('sha256'))[:12]}… for model "
            f"{manifest.get('name')!r}, got {actual[:12]}…); the file is corrupt or belongs to another model"
        )
    return folder, manifest, actual


def verify_model(folder: str | Path) -> dict[str, Any]:
    """The manifest of a model folder whose tensor file matches its checksum; ``ModelError`` otherwise."""
    return _checked(folder)[1]


def _load(folder: str | Path, backend: str):
    folder, manifest, actual = _checked(folder)
    tensor_path = folder / TENSORS
    try:
        # safetensors only parses a JSON header and raw tensor bytes: nothing in the file can run
        if backend == "torch":
            from safetensors.torch import load_file

            state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(tensor_path)).items()}
        else:
            from safetensors.numpy import load_file

            state = {k: float32(v) for k, v in load_file(str(tensor_path)).items()}
    except Exception as exc:  # a pickle, a truncated file, ... renamed to .safetensors
        raise_if_out_of_memory(exc)
        raise ModelError(f"{tensor_path}: not a valid safetensors file ({exc.__class__.__name__}: "
                         f"{(str(exc).splitlines() or [''])[0][:120]})") from None
    try:
        config = DecoderConfig(**manifest["decoder"])
        vocab = Vocabulary(tuple(manifest["vocab"]))
        if backend == "torch":
            from .decoder import CaptionDecoder

            decoder = CaptionDecoder(config)
            decoder.load_state_dict(state, strict=True)
            decoder.eval()
        else:
            from .decoder_np import NumpyDecoder

            decoder = NumpyDecoder(config, state)
    except Exception as exc:  # any mismatch between manifest and tensors is the user's file, not our bug
        raise ModelError(f"{folder}: model does not match its manifest ({exc.__class__.__name__}: {(str(exc).splitlines() or [''])[0][:120]})") from None
    if len(vocab) != config.vocab_size:
        raise ModelError(f"{folder}: vocabulary has {len(vocab)} words, decoder expects {config.vocab_size}")
    info = ModelInfo(manifest.get("name", folder.name), manifest["encoder"], actual, folder, config,
                     manifest.get("extra", {}), manifest.get("detectors") or {}, manifest.get("vse") or {},
                     manifest.get("grammar") or {}, manifest.get("bank") or {},
                     manifest.get("photo_bank") or {})
    log.info("loaded model %s (%s, sha256 %s…, %s)", info.name, info.encoder, actual[:12], backend)
    return decoder, vocab, info


def load_model(folder: str | Path):
    """Load (torch ``CaptionDecoder``, vocabulary, info); verify the checksum before touching the tensors.

    The torch decoder is the reference and the one that trains; ``captioner run`` uses
    ``load_runtime_model``.
    """
    return _load(folder, "torch")


def load_runtime_model(folder: str | Path):
    """Load (``NumpyDecoder``, vocabulary, info) from the same files, without importing torch."""
    return _load(folder, "numpy")

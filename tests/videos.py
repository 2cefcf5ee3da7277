"""Synthetic video files for tests, written with OpenCV's own ``VideoWriter``.

No ffmpeg binary is needed: OpenCV's pip wheel writes ``mp4v`` into ``.mp4``
and ``MJPG`` into ``.avi``. Keep videos tiny (the default 64x48 px at 10 fps
writes and decodes in milliseconds) so test suites stay fast.

Import from a test module as ``from videos import make_video`` (pytest puts
``tests/`` on ``sys.path`` because it has no ``__init__.py``).

Helpers:

* ``make_video(path, shots, fps=10, size=(64, 48), codec=None)`` -> ``SyntheticVideo``:
  one shot per ``(look, seconds)``; a look is a colour name from ``COLOURS``,
  an RGB tuple, or a pattern from ``PATTERNS``. Each frame also carries a
  small moving noise square and mild pixel noise, so consecutive frames differ
  (as in real footage) while different shots stay clearly apart for a CNN.
* ``shot_frame(look, index, size)`` -> the RGB array ``make_video`` writes
  (handy for image tests).
* ``corrupt_middle(src, dst)``: overwrite the middle of the frame data with
  random bytes; header and index survive, so the file opens and the frames
  before the damage decode (OpenCV then stops early without raising).
* ``truncate_video(src, dst)``: keep the header, drop every frame.
  ``.avi``: opens with the right size/fps/count but decodes nothing.
  ``.mp4``: keeps ``ftyp`` + ``moov``; opens with width 0 and decodes nothing.
* ``patch_avi_header(src, dst, frame_count=..., fps=...)``: make an ``.avi``
  lie about its frame count or frame rate (the frames themselves are intact).
  FFmpeg derives the timestamps from the rate, so a patched fps changes the
  decoded times too; a patched count changes only the metadata.
* ``write_garbage(path)``: random bytes, e.g. named ``.mp4``.

Every helper returns the path it wrote and overwrites ``dst`` if it exists.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

#: Named colours, RGB. Chosen far apart so shot changes are unmistakable.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 40, 220),
    "yellow": (230, 220, 40),
    "magenta": (210, 40, 200),
    "cyan": (40, 210, 220),
    "white": (240, 240, 240),
    "black": (10, 10, 10),
    "grey": (128, 128, 128),
    "orange": (240, 140, 20),
}

#: Textured looks: black/white checkerboard, vertical stripes, diagonal colour gradient.
PATTERNS = ("checker", "stripes", "gradient")

Look = str | tuple[int, int, int]


@dataclass(frozen=True)
class SyntheticVideo:
    """What ``make_video`` wrote: enough to predict what decoding should give.

    Usable wherever a path is expected (``os.fspath``/``Path(video)``); pass
    ``video.path`` to APIs that insist on ``str``/``Path`` instances.
    """

    path: Path
    fps: float
    size: tuple[int, int]  # (width, height)
    frame_count: int
    shot_starts: tuple[float, ...]  # seconds at which each shot's first frame is shown

    @property
    def duration(self) -> float:
        """Seconds of video: frame_count / fps."""
        return self.frame_count / self.fps

    @property
    def cut_times(self) -> tuple[float, ...]:
        """Times of the shot changes (every shot start but the first)."""
        return self.shot_starts[1:]

    def __fspath__(self) -> str:
        return str(self.path)


def shot_frame(look: Look, index: int, size: tuple[int, int] = (64, 48), *, seed: int = 0) -> np.ndarray:
    """The RGB uint8 frame number ``index`` of a shot with the given look.

    A noise square (a quarter of the height) slides one step to the right per
    frame, and +-6 of pixel noise is added everywhere, so no two frames are
    equal but the look dominates the picture.
    """
    width, height = size
    base = _base_image(look, width, height)
    rng = np.random.default_rng((seed, index))
    image = base.astype(np.int16) + rng.integers(-6, 7, size=base.shape, dtype=np.int16)
    side = max(2, height // 4)
    x0 = (index * max(1, width // 16)) % max(1, width - side)
    y0 = (height - side) // 2
    image[y0:y0 + side, x0:x0 + side] = rng.integers(0, 256, size=(side, side, 3), dtype=np.int16)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_video(
    path: str | os.PathLike[str],
    shots: list[tuple[Look, float]] | None = None,
    fps: float = 10.0,
    size: tuple[int, int] = (64, 48),
    codec: str | None = None,
    *,
    seed: int = 0,
) -> SyntheticVideo:
    """Write a video made of ``shots``, each ``(look, seconds)``; default: 1 s red, 1 s blue.

    Each shot gets ``max(1, round(seconds * fps))`` frames. ``codec`` defaults
    to ``MJPG`` for ``.avi`` and ``mp4v`` otherwise. Raises ``RuntimeError``
    if OpenCV cannot write that combination.
    """
    path = Path(path)
    shots = shots if shots is not None else [("red", 1.0), ("blue", 1.0)]
    if not shots:
        raise ValueError("a video needs at least one shot")
    if codec is None:
        codec = "MJPG" if path.suffix.lower() == ".avi" else "mp4v"
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), float(fps), tuple(size))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {codec!r} to {path}")
    index = 0
    starts: list[float] = []
    try:
        for shot_number, (look, seconds) in enumerate(shots):
            starts.append(index / fps)
            for i in range(max(1, round(seconds * fps))):
                rgb = shot_frame(look, index, size, seed=seed * 1000 + shot_number)
                writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                index += 1
    finally:
        writer.release()
    return SyntheticVideo(path=path, fps=float(fps), size=tuple(size), frame_count=index,
                          shot_starts=tuple(starts))


#: The display matrix (ISO 14496-12 ``tkhd``, 16.16 fixed point) FFmpeg writes for ``-metadata:s:v rotate=N``.
_ROTATION_MATRIX = {90: (0, -65536, 0, 65536, 0, 0, 0, 0, 1 << 30), 180: (-65536, 0, 0, 0, -65536, 0, 0, 0, 1 << 30),
                    270: (0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)}


def rotate_video(path: str | os.PathLike[str], degrees: int) -> Path:
    """Tag an ``.mp4`` from ``make_video`` as a phone tags a portrait recording: pixels unchanged, a display
    rotation in the track header (the matrix ``ffmpeg -c copy -metadata:s:v rotate=DEGREES`` writes)."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    box = data.find(b"tkhd")
    if box < 0:
        raise ValueError(f"{path}: no track header")
    # version/flags, then (v0) creation, modification, track id, reserved, duration: 4 bytes each, or (v1) 8, 8, 4, 4, 8;
    # then reserved 8, layer, group, volume, reserved 2 each: the matrix
    offset = box + 4 + (4 + 20 if data[box + 4] == 0 else 4 + 32) + 16
    data[offset:offset + 36] = struct.pack(">9i", *_ROTATION_MATRIX[degrees])
    path.write_bytes(bytes(data))
    return path


def corrupt_middle(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], *, fraction: float = 0.3, seed: int = 0
) -> Path:
    """Copy ``src`` to ``dst`` with the middle ``fraction`` of its frame data replaced by noise.

    Only the media payload is touched (the ``mdat`` box of an ``.mp4``, the
    ``movi`` list of an ``.avi``; the middle of the file otherwise), so the
    container still opens and the first frames decode.
    """
    data = bytearray(Path(src).read_bytes())
    lo, hi = _payload_span(bytes(data))
    middle = (lo + hi) // 2
    half = max(1, int((hi - lo) * fraction / 2))
    a, b = max(lo, middle - half), min(hi, middle + half)
    rng = np.random.default_rng(seed)
    data[a:b] = rng.integers(0, 256, size=b - a, dtype=np.uint8).tobytes()
    dst = Path(dst)
    dst.write_bytes(bytes(data))
    return dst


def truncate_video(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Copy ``src`` to ``dst`` keeping the container header but none of the frames.

    Models an interrupted download or a recording that was never finalised.
    Supports what ``make_video`` writes (``.avi`` and ``.mp4``).
    """
    data = Path(src).read_bytes()
    if data[:4] == b"RIFF":
        movi = _find_avi_movi(data)
        out = data[:movi + 4]  # everything up to and including the 'movi' tag
    else:
        out = b"".join(data[o:o + s] for kind, o, s in _mp4_boxes(data) if kind != b"mdat")
        if not out:
            raise ValueError(f"{src}: neither AVI nor MP4")
    dst = Path(dst)
    dst.write_bytes(out)
    return dst


def patch_avi_header(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    frame_count: int | None = None,
    fps: int | None = None,
) -> Path:
    """Copy an ``.avi`` made by ``make_video`` with a lying frame count and/or frame rate.

    ``frame_count`` rewrites the main header, stream header and OpenDML
    totals; ``fps`` rewrites the stream rate (``fps=0`` makes FFmpeg fall back
    to 25 fps, ``fps=1000`` squeezes the timestamps 100x for a 10 fps video).
    """
    data = bytearray(Path(src).read_bytes())
    if data[:4] != b"RIFF":
        raise ValueError(f"{src}: not an AVI file")
    avih = data.find(b"avih") + 8
    strh = data.find(b"strh") + 8
    dmlh = data.find(b"dmlh")
    if frame_count is not None:
        struct.pack_into("<I", data, avih + 16, frame_count)  # dwTotalFrames
        struct.pack_into("<I", data, strh + 32, frame_count)  # dwLength
        if dmlh >= 0:
            struct.pack_into("<I", data, dmlh + 8, frame_count)
    if fps is not None:
        struct.pack_into("<I", data, avih, 1_000_000 // fps if fps else 0)  # dwMicroSecPerFrame
        struct.pack_into("<I", data, strh + 20, 1)  # dwScale
        struct.pack_into("<I", data, strh + 24, fps)  # dwRate
    dst = Path(dst)
    dst.write_bytes(bytes(data))
    return dst


def write_photos(folder: str | os.PathLike[str], count: int, step: int = 40) -> Path:
    """``count`` flat grey 32x32 JPEGs ``p0.jpg``, ``p1.jpg``, ... (grey level ``step * i``) in a new ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"p{i}.jpg"), np.full((32, 32, 3), step * i, np.uint8))
    return folder


def write_garbage(path: str | os.PathLike[str], size: int = 4096, *, seed: int = 0) -> Path:
    """Write ``size`` random bytes: a file that no demuxer recognises."""
    path = Path(path)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size=size, dtype=np.uint8).tobytes())
    return path


# --------------------------------------------------------------------------- internals


def _base_image(look: Look, width: int, height: int) -> np.ndarray:
    """The noiseless picture of a look."""
    if isinstance(look, tuple):
        return np.full((height, width, 3), look, dtype=np.uint8)
    if look in COLOURS:
        return np.full((height, width, 3), COLOURS[look], dtype=np.uint8)
    ys, xs = np.mgrid[0:height, 0:width]
    if look == "checker":
        cell = max(2, height // 6)
        on = ((xs // cell + ys // cell) % 2).astype(bool)
        return np.where(on[..., None], 235, 20).astype(np.uint8).repeat(3, axis=2)
    if look == "stripes":
        on = ((xs // max(2, width // 8)) % 2).astype(bool)
        return np.where(on[..., None], np.array([240, 200, 30]), np.array([30, 30, 120])).astype(np.uint8)
    if look == "gradient":
        r = (xs * 255 // max(1, width - 1)).astype(np.uint8)
        g = (ys * 255 // max(1, height - 1)).astype(np.uint8)
        b = np.full_like(r, 128)
        return np.stack([r, g, b], axis=2)
    raise ValueError(f"unknown look {look!r}: use a name from COLOURS, PATTERNS or an RGB tuple")


def _mp4_boxes(data: bytes) -> list[tuple[bytes, int, int]]:
    """Top-level ISO-BMFF boxes as (type, offset, size)."""
    boxes = []
    offset = 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset:offset + 4], "big")
        kind = data[offset + 4:offset + 8]
        if size == 1 and offset + 16 <= len(data):
            size = int.from_bytes(data[offset + 8:offset + 16], "big")
        elif size == 0:
            size = len(data) - offset
        if size < 8:
            break
        boxes.append((kind, offset, size))
        offset += size
    return boxes


def _find_avi_movi(data: bytes) -> int:
    """Offset of the 'movi' tag of the ``LIST movi`` chunk."""
    at = data.find(b"movi")
    while at >= 0 and data[at - 8:at - 4] != b"LIST":
        at = data.find(b"movi", at + 1)
    if at < 0:
        raise ValueError("no 'LIST movi' chunk in AVI file")
    return at


def _payload_span(data: bytes) -> tuple[int, int]:
    """Byte range holding the encoded frames."""
    if data[:4] == b"RIFF":
        movi = _find_avi_movi(data)
        size = int.from_bytes(data[movi - 4:movi], "little")
        return movi + 4, min(len(data), movi + size)
    for kind, offset, size in _mp4_boxes(data):
        if kind == b"mdat":
            return offset + 8, offset + size
    return len(data) // 10, len(data) - len(data) // 10


def make_audio(path: str | os.PathLike[str], seconds: float = 1.0, rate: int = 16000, cover: bool = False) -> Path:
    """Write a sound file with no picture (a 440 Hz tone; PyAV picks the codec from the suffix: .wav, .m4a, .mp3,
    .mp4). ``cover``: with an album cover, a JPEG attached picture (.mp3, .mp4), as music files carry one."""
    import av

    path = Path(path)
    codec = {".wav": "pcm_s16le", ".m4a": "aac", ".mp3": "mp3", ".mp4": "aac"}.get(path.suffix.lower(), "pcm_s16le")
    samples = (8000 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)).astype(np.int16)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        if cover:
            art = out.add_stream("mjpeg", rate=1)
            art.width, art.height, art.pix_fmt = 64, 64, "yuvj420p"
            art.disposition = av.stream.Disposition.attached_pic
            picture = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 200, np.uint8), format="rgb24")
            for packet in [*art.encode(picture.reformat(format="yuvj420p")), *art.encode()]:
                out.mux(packet)
        chunk = 1024
        for s in range(0, len(samples), chunk):
            frame = av.AudioFrame.from_ndarray(samples[None, s : s + chunk], format="s16", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def pyav_video(path: str | os.PathLike[str], codec: str, images: Sequence[np.ndarray], *, rate: int = 10,
               gop: int | None = None, options: dict[str, str] | None = None, pix_fmt: str = "yuv420p",
               pts_ms: Sequence[int] | None = None, container: str | None = None) -> Path:
    """``images`` (RGB uint8, one size) written by PyAV with ``codec`` (skipped where this PyAV has no such
    encoder); ``pts_ms``: each frame's time in milliseconds (a variable frame rate), else one per ``1 / rate``;
    ``container``: FFmpeg's muxer (``"h264"``, ``"mpeg2video"``: a raw stream, no container), else from the suffix."""
    import fractions

    import pytest

    av = pytest.importorskip("av")
    if codec not in av.codecs_available:
        pytest.skip(f"no {codec} encoder in this PyAV")
    path = Path(path)
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.height, stream.width = images[0].shape[:2]
        stream.pix_fmt = pix_fmt
        if gop:
            stream.codec_context.gop_size = gop
        if options:
            stream.options = options
        if pts_ms is not None:
            stream.time_base = stream.codec_context.time_base = fractions.Fraction(1, 1000)
        for i, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format=pix_fmt)
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], fractions.Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def joined_recordings(path: str | os.PathLike[str], looks: list[str], seconds: float = 3.0, fps: int = 10,
                      size: tuple[int, int] = (64, 48), gop: int | None = None) -> Path:
    """MPEG-TS recordings joined end to end as ``cat a.ts b.ts`` joins them: each part's timestamps start at 0 again.
    ``gop``: frames between key frames (more than a part has: one key frame a part, as screen recorders write)."""
    import av

    path = Path(path)
    data = b""
    for n, look in enumerate(looks):
        part = path.with_name(f".part{n}.ts")
        with av.open(str(part), "w", format="mpegts") as out:
            stream = out.add_stream("mpeg2video", rate=fps)
            stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
            if gop:
                stream.codec_context.gop_size = gop
            for i in range(int(seconds * fps)):
                for packet in stream.encode(av.VideoFrame.from_ndarray(shot_frame(look, i, size), format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        data += part.read_bytes()
        part.unlink()
    path.write_bytes(data)
    return path


def make_timed_video(path: str | os.PathLike[str], *, video_start: float = 0.0, preroll: float = 0.0,
                     seconds: float = 4.0, sound: bool = True, fps: int = 25, sound_start: float = 0.0,
                     sound_end: float | None = None) -> Path:
    """An MPEG-4 .mp4 written with PyAV whose picture does not start where the container does.

    ``video_start``: the picture starts that many seconds after the sound (which starts at 0),
    as in TS recordings or ``ffmpeg -itsoffset``. ``preroll``: that many seconds of frames before 0,
    hidden by an edit list, as ``ffmpeg -ss N -c copy`` leaves them (the container still counts them).
    ``sound_start`` below 0 (an MKV keeps negative timestamps): the container starts before 0.
    ``sound_end``: where the sound ends (default: with the picture).
    The first half of the ``seconds`` shown is red, the second blue.
    """
    import fractions

    import av

    path = Path(path)
    out = av.open(str(path), "w", container_options={"avoid_negative_ts": "disabled"} if sound_start < 0 else {})
    v = out.add_stream("mpeg4", rate=fps)
    v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
    v.time_base = fractions.Fraction(1, fps)
    v.codec_context.gop_size = 1000  # one key frame, before the cut when there is a pre-roll
    a = None
    if sound:
        a = out.add_stream("mp2", rate=44100)
        a.layout = "mono"
    hidden, shown = int(round(preroll * fps)), int(round(seconds * fps))
    for i in range(hidden + shown):
        img = np.zeros((48, 64, 3), np.uint8)
        img[..., 0 if i < hidden + shown // 2 else 2] = 255
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = i - hidden + int(round(video_start * fps))
        for packet in v.encode(frame):
            out.mux(packet)
    for packet in v.encode():
        out.mux(packet)
    if a is not None:
        end = video_start + seconds if sound_end is None else sound_end
        for s0 in range(int(round(44100 * sound_start)), int(44100 * end), 1152):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1152), np.int16), format="s16", layout="mono")
            frame.sample_rate, frame.pts = 44100, s0
            for packet in a.encode(frame):
                out.mux(packet)
        for packet in a.encode():
            out.mux(packet)
    out.close()
    return path


def shifted_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str], seconds: float) -> Path:
    """``src``'s picture stream copied into ``dst`` with every timestamp ``seconds`` later, as ``ffmpeg -c copy
    -output_ts_offset`` or a cut part of a recording (``-f segment``) leaves them: the container starts there."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.video[0]
        copy = out.add_stream_from_template(stream)
        shift = int(round(seconds / stream.time_base))
        for packet in inp.demux(stream):
            if packet.dts is None:  # the demuxer's empty packet at the end
                continue
            packet.pts += shift
            packet.dts += shift
            packet.stream = copy
            out.mux(packet)
    return Path(dst)

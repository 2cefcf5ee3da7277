"""Read a video file as a stream of sampled RGB frames.

The rest of the tool only ever sees ``Frame`` values: this module is the one
place that knows OpenCV's quirks. Videos in the wild lie about themselves
(frame counts that are 0 or wrong, a frame rate of 0 or 1000), get damaged in
the middle or cut off at the end, so everything here trusts what actually
decodes over what the container claims:

* frames are read until ``grab()`` fails, never up to the announced count;
* a frame's time comes from the decoder's timestamp, not ``index / fps``;
* only the frames that are sampled are converted to pixels (``retrieve()``),
  so sampling 1 frame per second of a 30 fps video costs a decode per frame
  but a colour conversion and an array copy only per sample;
* nothing is held in memory: ``iter_frames`` is a generator.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import logging
import math
import os
import re
import shlex
import struct
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import cv2
import numpy as np

from captioner.config import IMAGE_EXTENSIONS
from captioner.errors import VideoError, first_line
from captioner.segment import cut_time
from captioner.native import quiet_native_logs, utf8_name

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Frame rate assumed for timestamps when the container gives none we believe
#: (the PAL rate, which is also what FFmpeg itself falls back to).
FALLBACK_FPS = 25.0

#: Frame rates above this are treated as "unknown". Containers that store
#: timestamps in milliseconds often report 1000 fps (the time base, not a
#: frame rate); real footage above a few hundred fps is stored slowed down.
MAX_PLAUSIBLE_FPS = 500.0

#: Seconds ``open_video`` lets OpenCV spend opening a file or decoding one frame.
OPEN_TIMEOUT_S = 30.0

#: ``grab()`` attempts after a failure before the stream is declared over. A
#: failure is usually the end of the file (where each further call fails at once),
#: but each undecodable packet of a damaged stretch fails one call and the next
#: may decode: with 3 attempts a 64 KB hole in an MP4 ended the captions there (and
#: damage in the first frames refused the file). 250: ten seconds of 25 fps frames.
_GRAB_ATTEMPTS = 250

#: Timestamps within this many seconds of a sampling instant count as on it,
#: so a 29.97 fps frame at 0.9999 s is the sample for 1 s, not the one after.
_TIME_EPS = 1e-3

#: ``--fast``: how many decoded key frames are held back to be put in presentation order (``iter_keyframes``).
_KEY_REORDER = 3

#: ``--fast``: a stretch longer than this without a key frame is worth a warning (encoders
#: put one every 2-10 s; screen recorders and intra-refresh streams only at the start).
FAST_GAP_WARNING_S = 30.0

#: A timestamp this many seconds behind the one before starts the clock again: recordings
#: joined end to end (``cat a.ts b.ts``) restart their timestamps, and the frames after
#: the join follow those before it. Smaller steps back (B-frame reordering, a muxer's
#: jitter) are held at the time before, as always.
_TIME_RESET_S = 1.0

#: Fewer decoded frames than this share of the announced count is worth a warning.
_SHORT_STREAM_RATIO = 0.9

#: ``iter_frames(..., seek=)``: the reader jumps ahead only when it would otherwise decode at least this many
#: seconds it does not need (a jump costs up to a key-frame interval of decoding, and a check)
SEEK_MIN_S = 10.0

#: Containers whose index FFmpeg seeks in exactly, by timestamps that only go forward (PyAV's format names).
#: Not MPEG-TS/PS: no index, and joined recordings restart their timestamps (a seek would land in the
#: wrong part, on the wrong clock).
_SEEKABLE_FORMATS = frozenset({"mov", "mp4", "matroska", "webm"})

#: Streams stored without a container (PyAV's format names): a bare H.264, HEVC, MPEG-2 (``.m2v``) or MPEG-4
#: bitstream, raw DV. FFmpeg announces its 25 fps default as their rate (DV: 60000) and times H.264 and HEVC
#: frames by it: a 30 fps ``.h264`` was captioned 1.2 times too long. The codec's own header (an H.264 SPS, an
#: MPEG-2 sequence header, a DV frame) has the real rate.
_RAW_FORMATS = frozenset({"h261", "h263", "h264", "hevc", "vvc", "mpegvideo", "m4v", "cavsvideo", "avs2", "avs3",
                          "vc1", "dirac", "obu", "dv"})


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video; hints only, never trusted for control flow."""

    path: Path
    width: int
    height: int
    fps: float  # 0.0 when the container does not say (or says something implausible)
    frame_count: int  # as reported by the container (may be wrong or 0)
    duration: float  # seconds, best estimate from metadata (0.0 if unknown)
    # a pixel's width over its height as shown (an anamorphic DVD's 720x480 pixels are shown 16:9): 1.0 if square
    pixel_aspect: float = 1.0
    #: seconds: the file's own first timestamp (its container's start), from which players count and cue times are
    #: counted; a browser plays on the timestamps themselves (a cut part of a recording: 12.2 s in), 0.0 if none
    clock_start: float = 0.0


@dataclass
class DecodeStats:
    """What one ``iter_frames`` pass actually decoded; filled in as the frames stream.

    Pass one to ``iter_frames(..., stats=...)`` to learn where the stream really
    ended, which for a damaged file or one whose header lies is not where the
    container says it ends.
    """

    decoded: int = 0  # frames decoded (grabbed), sampled or not
    sampled: int = 0  # frames yielded
    end_time: float = 0.0  # seconds: the last decoded frame's time plus one frame
    # ``end_time`` is where the picture ends, not the container's length: fewer frames decoded than it
    # announces (damaged, truncated or lying), or (``iter_keyframes``) every packet's timestamp read
    short: bool = False
    #: the stream was read to its end (not stopped by the caller: ``within``'s ``end``); only then is
    #: ``end_time`` where the picture ends
    finished: bool = False
    #: seconds: where the container says the picture ends, on the same clock (0.0: it does not say)
    announced_end: float = 0.0


@dataclass(frozen=True)
class Frame:
    """One sampled frame."""

    index: int  # decoded frame number in the stream (0-based)
    time: float  # seconds since the start of the stream, non-decreasing
    image: np.ndarray  # RGB uint8, H x W x 3
    # the time of the first frame after the sample before this one (this one's own time where none came
    # between; None: not known): what this sample shows can have come no earlier. A screen recording stores a
    # frame only when the screen changes: between samples 20 s apart, the cut belongs at the second, not half-way
    since: float | None = None


def open_video(path: str | Path) -> VideoInfo:
    """Check that ``path`` is a readable video and return its metadata.

    Decodes the first frame as well, so that a file whose header survives but
    whose frames do not (a truncated download) is rejected here, before any
    model is loaded, rather than halfway through a batch.

    Raises:
        VideoError: with a one-line message that starts with the path.
    """
    p = Path(path)
    _check_file(p, path)
    try:
        return dataclasses.replace(_open_video(p), clock_start=_stream_facts(p)[4])
    except cv2.error as exc:
        raise VideoError(f"{p}: OpenCV cannot read this file ({_cv_reason(exc)})") from None


def _probe(p: Path, read: Callable[[Any], T], otherwise: T) -> T:
    """``read(container)`` of ``p`` opened by PyAV (FFmpeg), or ``otherwise`` when PyAV is missing or
    cannot read ``p``: what OpenCV does not say about a file."""
    try:
        import av

        with av.open(_ffmpeg_name(p), timeout=OPEN_TIMEOUT_S) as container:
            return read(container)
    except Exception:  # PyAV raises its own error types for every way a file can be bad
        return otherwise


def _streams(p: Path) -> tuple[bool, list[bool]] | None:
    """How FFmpeg (through PyAV) reads ``p``: (whether it has sound, for each picture stream whether it
    is an attached picture such as an album cover); None when PyAV is missing or cannot read ``p``."""

    def read(container: Any) -> tuple[bool, list[bool]]:
        import av

        cover = av.stream.Disposition.attached_pic
        return bool(container.streams.audio), [bool(s.disposition & cover) for s in container.streams.video]

    return _probe(p, read, None)


def _stream_timing(p: Path) -> tuple[float, float | None, frozenset[str]]:
    """(where the picture starts on the player's clock, how long the picture stream lasts) of ``p``
    (``_stream_facts``).

    Players count time from the container's start; OpenCV counts from the video stream's first
    frame (unless the container starts before 0). They differ when the sound starts first (TS and
    MKV recordings, ``-itsoffset``): every cue came that much early. The duration (None if
    unknown) tells a cut-down file, whose container still counts the frames an edit list hides,
    from a truncated one. The third value: the container's names as FFmpeg gives them (``mov``,
    ``mp4``, ...; ``_SEEKABLE_FORMATS`` can be jumped in).
    (0.0, None, {}) without PyAV's answer (~15 ms a file).
    """
    return _stream_facts(p)[:3]


def _stream_facts(p: Path) -> tuple[float, float | None, frozenset[str], tuple[float, int] | None, float]:
    """``_stream_timing``'s three values, ``_raw_timing``'s and the container's start (``VideoInfo.clock_start``:
    0.0 if none or implausible), from one PyAV open of ``p``, kept while the
    file stays as it is: ``open_video`` and the reader both ask (a 25 fps video was opened by PyAV three
    times a run, ~11 ms each)."""
    try:
        st = os.stat(p)
    except OSError:
        return _read_stream_facts(p)
    return _cached_stream_facts(str(p), st.st_ino, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _cached_stream_facts(path: str, inode: int, size: int, mtime_ns: int) -> tuple[float, float | None, frozenset[str],
                                                                                   tuple[float, int] | None, float]:
    return _read_stream_facts(Path(path))


def _read_stream_facts(p: Path) -> tuple[float, float | None, frozenset[str], tuple[float, int] | None, float]:
    def read(container: Any) -> tuple[float, float | None, frozenset[str], tuple[float, int] | None, float]:
        stream = container.streams.video[0]
        base = float(stream.time_base) if stream.time_base else 0.0
        start = stream.start_time * base if stream.start_time is not None and base else None
        origin = _container_start(container)
        offset = start - origin if start is not None and origin is not None else 0.0
        seconds = stream.duration * base if stream.duration and base else None
        if seconds is None and start is not None:  # MKV, WebM: no stream duration, an estimated frame count
            end = _picture_end(container, stream)
            seconds = end - start if end is not None and end > start else None
        raw = None
        rate = _raw_rate(container, stream)
        if rate is not None:
            length = container.duration / 1e6 if container.duration else 0.0
            raw = rate, int(round(length * rate)) if math.isfinite(length) and length > 0 else int(stream.frames or 0)
        return (offset if math.isfinite(offset) and 0 < offset < 86400 else 0.0), seconds, \
            frozenset(_format_names(container)), raw, (origin if origin is not None and 0 < origin < 86400 else 0.0)

    return _probe(p, read, (0.0, None, frozenset(), None, 0.0))


#: The most packets ``_picture_end`` reads after seeking to a file's last key frame.
_TAIL_PACKETS = 4000


def _picture_end(container: Any, stream: Any) -> float | None:
    """Where the picture stream of a whole file ends, in seconds, from the packets after its last key
    frame (read, not decoded); None when the file ends before the length its header gives (cut off:
    every stream stops early) or the tail cannot be read.

    A container without the stream's length (MKV, WebM) lets OpenCV estimate the frame count from the
    file's length, which counts sound that outlasts the picture, and from the average frame rate,
    which a variable-rate recording does not keep: whole files were reported as damaged.
    """
    length = container.duration / 1e6 if container.duration else None
    origin = _container_start(container) or 0.0
    if not length or not math.isfinite(length):
        return None
    try:
        container.seek(int((origin + length) * 1e6), backward=True, any_frame=False)
        picture = every = None
        for count, packet in enumerate(container.demux()):
            if count >= _TAIL_PACKETS:
                return None
            if packet.pts is None or not packet.time_base:
                continue
            end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
            every = end if every is None else max(every, end)
            if packet.stream.index == stream.index:
                picture = end if picture is None else max(picture, end)
    except Exception:  # PyAV's errors for a file it cannot seek in or read
        return None
    if picture is None or every is None:
        return None
    # an MKV whose timestamps start late (remuxed with -copyts from a recording 10 minutes in) gives its length
    # from 0, not from its start: as a length it made a whole file "damaged or truncated" and a stretch's JSON
    # 10 minutes long; the part after the start is then what the packets must reach
    whole = every - origin >= _SHORT_STREAM_RATIO * length or (
        0 < origin < length and every - origin >= _SHORT_STREAM_RATIO * (length - origin))
    return picture if whole else None


#: Frames a packet's display time may lie before the latest one (frames stored out of display order: B-frames,
#: a few) before the stream counts as starting again, where packets carry no decoding time (``_packet_length``).
_REORDER_FRAMES = 16


def _packet_length(p: Path) -> float | None:
    """Seconds from the first picture packet to the end of the last, from every packet's timestamp (read, not
    decoded: 0.1 s for 8 minutes of 720p MPEG-TS, which took 10-25 s to decode); None where the timestamps
    start again (joined recordings: the picture lasts longer than they say), are missing, or cannot be read.

    A restart is a decoding time that goes back (they only go forward within a stream), or where packets
    have none, a display time more than ``_REORDER_FRAMES`` frames before the latest: a 2 s intro joined
    before a recording went back by 2 s, less than a first rule of 2 s caught.
    """
    def read(container: Any) -> float | None:
        stream = container.streams.video[0]
        base = float(stream.time_base) if stream.time_base else 0.0
        rate = float(stream.average_rate) if stream.average_rate else 0.0
        if not base:
            return None
        reorder = _REORDER_FRAMES / rate if rate else 0.5
        first = latest = decoded = None
        end = -math.inf
        for packet in container.demux(stream):
            if packet.pts is None:
                if packet.size:  # a picture without a time: the length cannot be told from the timestamps
                    return None
                continue  # the demuxer's empty packet at the end
            if packet.dts is not None:
                if decoded is not None and packet.dts < decoded:
                    return None
                decoded = packet.dts
            pts = packet.pts * base
            if latest is not None and pts < latest - reorder:
                return None
            latest = pts if latest is None else max(latest, pts)
            first = pts if first is None else min(first, pts)
            step = packet.duration * base if packet.duration else (1.0 / rate if rate else 0.0)
            end = max(end, pts + step)
        return end - first if first is not None else None

    return _probe(p, read, None)


def _format_names(container: Any) -> set[str]:
    """The names of a PyAV container's format (``"mov,mp4,m4a,3gp,3g2,mj2"``: one each)."""
    return set(str(getattr(getattr(container, "format", None), "name", "")).split(","))


def _raw_rate(container: Any, stream: Any) -> float | None:
    """The frame rate of a stream stored without a container (``_RAW_FORMATS``), as the codec's header gives
    it; None for any other file, or where that rate is missing or implausible."""
    if not _RAW_FORMATS & _format_names(container):
        return None
    rate = stream.guessed_rate or stream.codec_context.framerate
    rate = float(rate) if rate else 0.0
    return rate if 0 < rate <= MAX_PLAUSIBLE_FPS else None


def _raw_timing(p: Path) -> tuple[float, int] | None:
    """(frame rate, frame count, 0 if unknown) of ``p`` when it is a raw stream (``_raw_rate``), else None.

    OpenCV's count is the length times its rate (DV: 60000 fps), so it is worked out again from the real one
    (``_stream_facts``).
    """
    return _stream_facts(p)[3]


def _container_start(container: Any) -> float | None:
    """The container's start on the player's clock, in seconds (None if it does not say)."""
    start = getattr(container, "start_time", None)
    return start / 1e6 if isinstance(start, (int, float)) and math.isfinite(start / 1e6) else None


def _audio_only(p: Path) -> bool:
    """Whether ``p`` is sound with no picture: an .mp3 or .m4a given by mistake.

    Asked only once OpenCV has refused the file, to tell that common slip from a damaged or
    unknown one; False whenever PyAV is missing or cannot read the file either.
    """
    streams = _streams(p)
    return streams is not None and streams[0] and not streams[1]


def _unfinished_mp4(p: Path) -> bool:
    """Whether ``p`` is an MP4/MOV whose ``moov`` box (the index of its frames, written last unless the
    file was made for streaming) is missing: what a cut-off download or a camera stopped mid-recording
    leaves. Its boxes are walked by their sizes (a few reads, not the frames)."""
    import struct

    try:
        with open(p, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            at, kinds = 0, []
            while at + 8 <= size and len(kinds) < 1000:
                handle.seek(at)
                length, kind = struct.unpack(">I4s", handle.read(8))
                if length == 1:
                    (length,) = struct.unpack(">Q", handle.read(8))
                elif length == 0:
                    length = size - at
                if length < 8:
                    break
                kinds.append(kind)
                at += length
    except (OSError, struct.error):
        return False
    return bool(kinds) and kinds[0] == b"ftyp" and b"moov" not in kinds


def _cover_art_only(p: Path) -> bool:
    """Whether every picture stream of ``p`` is an attached picture (an album cover) beside its sound.

    OpenCV opens such a file (.mp3, .m4a with artwork) as a one-frame video at FFmpeg's 90,000 fps
    placeholder rate; asked only when OpenCV reports an impossible frame rate, so PyAV's import and
    probe (~15 ms) are not paid for ordinary videos. False whenever PyAV is missing or cannot read ``p``.
    """
    streams = _streams(p)
    return streams is not None and streams[0] and bool(streams[1]) and all(streams[1])


def _open_video(p: Path) -> VideoInfo:
    """The body of ``open_video`` (``cv2.error`` is turned into ``VideoError`` by the caller)."""
    cap = _open_capture(p, OPEN_TIMEOUT_S)
    try:
        if not cap.isOpened():
            raise VideoError(f"{p}: " + ("no video stream (an audio file)" if _audio_only(p) else
                                         "an unfinished MP4 (its index is missing: an interrupted download or "
                                         "recording?)" if _unfinished_mp4(p) else
                                         "not a video file or unsupported codec"))
        if _float_prop(cap, cv2.CAP_PROP_FPS) > MAX_PLAUSIBLE_FPS and _cover_art_only(p):
            raise VideoError(f"{p}: no video stream (an audio file; its only picture is the cover art)")
        info = _read_info(p, cap)
        first = _grab(cap)
        if not first:
            raise VideoError(f"{p}: no decodable frames")
        if (p.suffix.lower() in IMAGE_EXTENSIONS or _fourcc(cap) in _PICTURE_CODECS) and not _grab(cap):
            # one picture (a photo, or one renamed .mp4), captioned as a 40 ms video; an animated PNG
            # or WebP has more frames and goes on
            # the path as given (``p.name`` was a command that failed from any other folder), quoted for a shell
            name = str(p) if not str(p).startswith("-") else f"./{p}"  # "-photo.mp4" would read as an option
            command = f"captioner image {shlex.quote(name)}"
            raise VideoError(f"{p}: a still picture, not a video (caption it with: {command})")
        if info.width <= 0 or info.height <= 0:
            # Some containers only reveal the frame size once a frame decodes.
            image = _retrieve(cap)
            if image is None:
                raise VideoError(f"{p}: no decodable frames")
            info = VideoInfo(
                path=info.path,
                width=int(image.shape[1]),
                height=int(image.shape[0]),
                fps=info.fps,
                frame_count=info.frame_count,
                duration=info.duration,
                pixel_aspect=info.pixel_aspect,
            )
        return info
    finally:
        cap.release()


def iter_frames(
    path: str | Path, fps: float, *, max_frame_seconds: float = 10.0, stats: DecodeStats | None = None,
    seek: float = 0.0,
) -> Iterator[Frame]:
    """Yield one frame per ``1 / fps`` seconds of stream time, streaming.

    The first decoded frame is always yielded. A frame is sampled when its
    timestamp reaches the next sampling instant ``k / fps``; when the video
    has fewer frames per second than requested, every frame is yielded.

    ``max_frame_seconds`` bounds how long OpenCV may block opening the file or
    reading one frame (where the OpenCV build supports read timeouts), so a
    pathological file fails instead of hanging a batch.

    A stream that stops decoding part-way (damaged file) ends the iteration
    with a logged warning, keeping what was read. ``stats``, if given, is
    updated as frames decode (see ``DecodeStats``).

    ``seek``: seconds (on the same clock as ``Frame.time``) before which no frame is wanted, as
    ``within`` cuts them (``run --start``). Where the container has an index (MP4, MOV, MKV, WebM) and
    that saves at least ``SEEK_MIN_S`` of decoding, the reader jumps to a little before it, so an
    hour into a film is not an hour of decoding; the samples from there on are the frames a reading
    from the start gives (same times, same pixels), and the last ones before ``seek`` still come. A
    jump that lands past where it should (a variable-rate stream's index is approximate) or nowhere
    reads the file again from the start. The first frames and the stats' frame count are then
    FFmpeg's estimate, not a count.

    Raises:
        ValueError: ``fps`` or ``max_frame_seconds`` is not a positive number
            (raised on the call, not on iteration).
        VideoError: the file is missing/unreadable (on the call), or cannot be
            opened or yields no decodable frame at all (on iteration).
    """
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"sampling fps must be a positive number, got {fps!r}")
    if not (math.isfinite(max_frame_seconds) and max_frame_seconds > 0):
        raise ValueError(f"max_frame_seconds must be positive, got {max_frame_seconds!r}")
    p = Path(path)
    _check_file(p, path)
    stats = stats if stats is not None else DecodeStats()
    return _iter_frames(p, float(fps), float(max_frame_seconds), stats, float(seek) if math.isfinite(seek) else 0.0)


def read_frames(path: str | Path, fps: float, *, keyframes: bool = False,
                stats: DecodeStats | None = None, seek: float = 0.0) -> Iterator[Frame]:
    """Sampled frames of a video: ``iter_frames``, or with ``keyframes`` ``iter_keyframes`` (``--fast``).

    The two readers are siblings: the same ``Frame`` values, the same sampling rule
    (one frame per ``1 / fps`` seconds at most, the first always), the same frame-rate
    fallback and the same ``DecodeStats``. ``seek``: see ``iter_frames`` (the key-frame reader reads
    every packet anyway, without decoding it, and does not jump).
    """
    if keyframes:
        return iter_keyframes(path, fps, stats=stats)
    reason = pyav_reason(path)
    if reason is not None:
        log.info("%s: read with PyAV (%s)", path, reason)
        return iter_keyframes(path, fps, stats=stats, keys_only=False)
    return iter_frames(path, fps, stats=stats, seek=seek)


#: The packets' times ``_holds_frames`` looks at (read, not decoded) at most, the stream time they span at most, and
#: the bytes of packets read at most (a 1080p file at 80 Mb/s: 100 MB read to choose a reader).
_HOLD_SCAN_PACKETS, _HOLD_SCAN_S, _HOLD_SCAN_BYTES = 300, 60.0, 16_000_000


def _holds_frames(times: list[float], packets: Iterator[Any], base: float) -> bool:
    """Whether the stream stores bursts of frames and holds each burst's last one: two gaps or more of a second or
    more, and of 8 times the usual distance between frames, among its first packets' times (one is a glitch, a join
    or a timestamp wrap: a phone's stalled second sent its film to the reader that cannot jump to --start). A screen
    recording or a slideshow with repeats dropped (``ffmpeg -vf mpdecimate``) stores a burst as the picture changes,
    then one frame held for seconds. OpenCV's reader samples the first frame of each burst and never the held one: a
    cue changed half-way to the next burst (4.5 s late, 5 s early), and a stretch lost a shot. The containers' frame
    rates do not tell (an MKV's or WebM's average is the nominal one, an MPEG-TS has none); a stream of one frame
    per change, as the ordinary reader times it well (``Frame.since``), and one whose rate changes, do not count.
    """
    if not base:
        return False
    read = 0
    for packet in packets:  # (``times``: those read so far, more read here)
        if len(times) >= _HOLD_SCAN_PACKETS or read > _HOLD_SCAN_BYTES or (
                times and times[-1] - times[0] > _HOLD_SCAN_S):
            break
        read += packet.size
        if packet.pts is not None and packet.size:
            times.append(float(packet.pts * base))
    times = sorted(set(times))
    gaps = [b - a for a, b in zip(times, times[1:])]
    if len(gaps) < 3:
        return False
    usual = sorted(gaps)[len(gaps) // 2]
    return sum(gap >= max(1.0, 8 * usual) for gap in gaps) >= 2


def pyav_reason(path: str | Path) -> str | None:
    """Why OpenCV would show ``path``'s picture otherwise than a player does (then ``read_frames`` decodes it with
    PyAV, as ``--fast`` does), or None. From its first key frame, kept while the file stays as it is:

    * BT.2020 colour (HDR, a phone's default): OpenCV converted it with another matrix (pure red came out
      255, 66, 44; grey 142 for 125);
    * transparency (PNG or ProRes 4444 in MOV, animated PNG): OpenCV drops it, and the picture was seen over
      black where photos are seen over white;
    * a mirroring display matrix (some front cameras, ``-display_hflip``): OpenCV turns the picture by the angle
      it reads from it, and a mirrored recording came out upside down;
    * bursts of frames whose last one is held (``_holds_frames``): PyAV's reader samples it too (``iter_keyframes``).
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _cached_pyav_reason(str(path), st.st_ino, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _cached_pyav_reason(path: str, inode: int, size: int, mtime_ns: int) -> str | None:
    def read(container: Any) -> str | None:
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = "NONKEY"
        base = float(stream.time_base) if stream.time_base else 0.0
        times: list[float] = []  # the packets' times, for ``_holds_frames`` (a decoder may take many before a frame)
        packets = container.demux(stream)
        frame = None
        for packet in packets:
            if packet.pts is not None and packet.size and base:
                times.append(float(packet.pts * base))
            frame = next(iter(packet.decode()), None)
            if frame is not None:
                break
        if frame is None:
            return None
        if getattr(frame, "colorspace", None) in (9, 10):  # FFmpeg's BT2020_NCL, BT2020_CL
            return "BT.2020 colour"
        if _has_alpha(frame.format) and _transparent(frame.to_ndarray(format="rgba")[:, :, 3]):
            return "transparency"
        matrix = _display_matrix(frame)
        if matrix is not None and _mirrored(matrix):
            return "a mirrored display"
        if _holds_frames(times, packets, base):
            return "bursts of frames, each last one held"
        return None

    return _probe(Path(path), read, None)


def within(frames: Iterator[Frame], start: float = 0.0, end: float | None = None,
           stats: DecodeStats | None = None) -> Iterator[Frame]:
    """The frames of ``frames`` from ``start`` seconds up to (not at) ``end``; reading stops at ``end``
    (the reader is closed there, its file released), so a scene near a film's start costs that scene.

    The last sample before ``start`` comes first, timed at ``start``, where it is the picture shown
    there: where a whole video's cues would change from it to the next sample (half-way between
    them) lies past ``start`` (a stretch opening between two key frames with ``--fast``: the next
    one may be a different shot), or no sample falls in the stretch at all. Only where the stream
    reaches ``start`` (``stats``, as the reader fills it in): past the end, nothing.
    """
    before: Frame | None = None
    found = False
    try:
        for frame in frames:
            if end is not None and frame.time >= end:
                break
            if frame.time < start:
                before = frame
                continue
            if not found and before is not None and cut_time(before.time, frame.time, frame.since) > start < frame.time:
                yield dataclasses.replace(before, time=start, since=None)
            found = True
            yield frame
        if not found and before is not None and (stats is None or stats.end_time > start):
            yield dataclasses.replace(before, time=start, since=None)
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()


def sample_times_hint(info: VideoInfo, fps: float) -> int:
    """Expected number of frames ``iter_frames(info.path, fps)`` yields, for progress bars.

    Derived from metadata, so it can be wrong for the same reasons the
    metadata can; 0 when the metadata is not enough to guess.
    """
    if not (math.isfinite(fps) and fps > 0) or info.frame_count <= 0 or info.fps <= 0:
        return 0
    if info.fps <= fps:
        return info.frame_count
    last_time = (info.frame_count - 1) / info.fps
    return math.floor((last_time + _sample_eps(fps)) * fps) + 1


# --------------------------------------------------------------------------- internals


def _iter_frames(path: Path, fps: float, max_frame_seconds: float, stats: DecodeStats,
                 seek: float) -> Iterator[Frame]:
    """The generator behind ``iter_frames`` (split out so argument errors are eager).

    OpenCV raises ``cv2.error`` on some inputs it cannot handle; that is the
    file's fault, not a bug, so it becomes a ``VideoError`` naming the file.
    """
    try:
        back = 0.0
        for _ in range(2):
            try:
                yield from _decode_frames(path, fps, max_frame_seconds, stats, seek, back)
                return
            except _SeekMissed as exc:  # raised before any frame is yielded
                for field in dataclasses.fields(DecodeStats):
                    setattr(stats, field.name, field.default)
                if exc.overshoot is None:
                    break
                # a variable-rate stream's index is approximate, more so the further in: twice as far back; a
                # jump past the end (a start past it), to a little before where the container says it ends
                log.debug("%s: %s; jumping %.1f s further back", path, exc, exc.overshoot)
                back += exc.overshoot
        log.debug("%s: reading from the start", path)
        yield from _decode_frames(path, fps, max_frame_seconds, stats)
    except cv2.error as exc:
        raise VideoError(f"{path}: OpenCV cannot decode this file ({_cv_reason(exc)})") from None


def _cv_reason(exc: BaseException) -> str:
    """A short one-line reason from a ``cv2.error`` (whose text spans several lines).

    ``OpenCV(5.0.0) /src/x.cpp:92: error: (-15:Bad number of channels) in function 'f'``
    followed by ``> detail`` lines becomes ``(-15:Bad number of channels) detail``.
    """
    lines = str(exc).splitlines() or [""]
    head = re.sub(r"^OpenCV\([^)]*\)\s*\S+:\d+:\s*error:\s*", "", lines[0].strip())
    head = head.split(" in function ")[0].strip()
    detail = next((ln.lstrip("> ").strip().rstrip(":") for ln in lines[1:] if ln.startswith(">")), "")
    text = " ".join(f"{head} {detail}".split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


class _SeekMissed(Exception):
    """``_decode_frames``' jump ahead did not land before where it was asked to (nothing yielded yet):
    ``overshoot``: how much further back to jump again, or None (read from the start instead)."""

    def __init__(self, message: str, overshoot: float | None = None) -> None:
        super().__init__(message)
        self.overshoot = overshoot


def _decode_frames(path: Path, fps: float, max_frame_seconds: float, stats: DecodeStats,
                   seek: float = 0.0, back: float = 0.0) -> Iterator[Frame]:
    """Sample frames from ``path`` (see ``iter_frames``); ``back``: seconds to jump further back than usual."""
    cap = _open_capture(path, max_frame_seconds)
    timeline: _Timeline | None = None
    try:
        if not cap.isOpened():
            raise VideoError(f"{path}: not a video file or unsupported codec")
        info = _read_info(path, cap)
        stream_fps = _stream_rate(info.fps)
        late, stream_seconds, formats = _stream_timing(path)
        seekable = bool(_SEEKABLE_FORMATS & formats)
        # where to jump to, on the player's clock: two sampling intervals and a second before ``seek``, so
        # that the samples before it are those of a reading from the start, and an approximate landing is early
        jump = seek - 2.0 / fps - 1.0 - back if seekable and seek > 0 else 0.0
        landing = jumped = False  # the next frame is the first after the jump; a jump was made
        offset = first = 0.0
        clock = _SampleClock(fps)
        timeline = _Timeline(1.0 / stream_fps)
        decoded = 0
        sampled = 0
        failed_retrieves = 0
        skipped = [0]
        # a frame without a timestamp is timed by its number, but never before the last frame that had one nor
        # more frames after it than it is numbers after it: a raw MPEG-2 stream's last frame, by its number over
        # FFmpeg's 25 fps for the stream's 30, came 12 s after the one before
        known, known_index = 0.0, 0
        since: float | None = None  # the time of the first frame decoded after the last sample
        while _grab(cap, skipped):
            index = decoded
            decoded += 1
            stamp = _frame_time(cap, index)
            raw = stamp
            if raw is None:
                after = known + (index - known_index) / stream_fps
                raw = index / stream_fps if known <= index / stream_fps <= after else after
            if index == 0:
                # what OpenCV's clock lacks of the player's: where a container starts before 0 (MKV, TS
                # across the timestamp wrap) OpenCV already counts from the container's start
                offset = late - raw if late - raw > 1e-3 else 0.0
                first = offset + raw
                stats.announced_end = first + stream_seconds if stream_seconds else 0.0
                if seek > 0 and not seekable and not stats.announced_end > seek:
                    # no jump here, and the header says the start is past the end (or says nothing): the packets'
                    # timestamps tell it in a moment, where decoding to the end took minutes for a film
                    length = _packet_length(path)
                    if length is not None and first + length <= seek:
                        stats.end_time, stats.finished = first + length, True
                        return
                if jump - first >= SEEK_MIN_S:
                    # OpenCV seeks to the key frame before and decodes on to the frame at that time
                    landing = bool(cap.set(cv2.CAP_PROP_POS_MSEC, (jump - offset) * 1000.0))
                    if not landing:
                        raise _SeekMissed("OpenCV cannot seek in this file")
                    continue
            elif landing:
                landing, jumped = False, True
                if not first <= offset + raw <= seek - 1.0 / fps:
                    raise _SeekMissed(f"a jump to {jump:.3f} s landed at {offset + raw:.3f} s",
                                      2 * (offset + raw - jump) if offset + raw > jump else None)
                index = max(1, round(_float_prop(cap, cv2.CAP_PROP_POS_FRAMES)) - 1)  # FFmpeg's estimate
                decoded = index + 1
            if stamp is not None:
                known, known_index = raw, index
            time = offset + timeline(raw)
            stats.decoded = decoded
            stats.end_time = time + 1.0 / stream_fps
            if not clock.due(time):
                since = time if since is None else since
                continue
            image = _retrieve(cap)
            if image is None:
                # Not taken: the following frame stands in for this one.
                failed_retrieves += 1
                since = time if since is None else since
                continue
            clock.take(time)
            sampled += 1
            stats.sampled = sampled
            yield Frame(index=index, time=time, image=image, since=time if since is None else min(since, time))
            since = None
        if landing:  # past the end, where the container says it is, or lost: from the start
            near_end = stats.announced_end - SEEK_MIN_S / 2
            raise _SeekMissed(f"no frame after a jump to {jump:.3f} s",
                              jump - near_end if stats.announced_end and jump > near_end else None)
        stats.finished = True
        if skipped[0]:
            log.warning("%s: %d damaged frame(s) could not be decoded and were passed over; captioning the rest",
                        path, skipped[0])
        if failed_retrieves:
            log.warning("%s: %d sampled frame(s) could not be decoded and were skipped",
                        path, failed_retrieves)
        if sampled == 0:
            raise VideoError(f"{path}: no decodable frames")
        last_frame = offset + (timeline.last or 0.0)  # on the player's clock, as ``first`` and ``end_time``
        if stream_seconds is not None and last_frame < first + stream_seconds < stats.end_time - _TIME_EPS:
            # the last frame lasted one frame of the average rate: a slideshow's few frames ran 3.7 s past
            # the stream's end (a variable-rate one, 20 minutes); a stream "ending" before its last frame lies
            stats.end_time = first + stream_seconds
        stats.short = info.frame_count > 0 and decoded < info.frame_count
        if jumped:  # the frames before the jump were not counted (``decoded`` is FFmpeg's estimate there): whether
            # the stream stops early, its last packets tell (a whole file whose last frame is held 10 s looked cut)
            stats.short = _probe(path, lambda c: _picture_end(c, c.streams.video[0]), None) is None
        # a file cut with -ss -c copy keeps the frames before the cut, hidden by an edit list, in its
        # frame count: short by the count, whole by the clock
        whole = stream_seconds is not None and stats.end_time - first >= _SHORT_STREAM_RATIO * stream_seconds
        # frames passed over at the start (said above) are missing from the count, not from the end
        if skipped[0] and stream_seconds is not None:
            whole = whole or stats.end_time >= _SHORT_STREAM_RATIO * stream_seconds
        if (stats.short if jumped else info.frame_count > 0 and decoded < _SHORT_STREAM_RATIO * info.frame_count) \
                and not whole:
            log.warning(
                "%s: decoding stopped after %d of the %d frames the container announces "
                "(%.1f s); the file may be damaged or truncated, captioning what was read",
                path, decoded, info.frame_count, timeline.last or 0.0,
            )
        else:
            log.debug("%s: decoded %d frames, sampled %d", path, decoded, sampled)
    finally:
        cap.release()
        if timeline is not None:  # also where the caller stopped reading (``within``'s end), past a join
            _log_joins(path, timeline.joins)


def _sample_eps(fps: float) -> float:
    """Timestamp tolerance: 1 ms, but never more than a tenth of the sampling interval."""
    return min(_TIME_EPS, 0.1 / fps)


def _stream_rate(fps: float) -> float:
    """The frame rate to time frames by: the container's, unless missing or implausible (then ``FALLBACK_FPS``)."""
    return fps if 0 < fps <= MAX_PLAUSIBLE_FPS else FALLBACK_FPS


class _Timeline:
    """Stream timestamps -> seconds that never go back.

    A small step back is held at the time before. A jump back of more than
    ``_TIME_RESET_S`` is a join: from there on, times continue ``step`` seconds after
    the last one (``joins`` counts them). Clamping alone would have given every frame
    after a join the time before it, so none was ever sampled: the second recording
    of a joined file was silently left out. A join holds only if the next frame goes on
    from where it went: after a damaged stretch a decoder may give one frame of a
    second before (an MP4 with a hole was timed 2.5 s long and called joined).
    """

    def __init__(self, step: float) -> None:
        self.step = step
        self.offset = 0.0
        self.last: float | None = None
        self.joins = 0
        #: where each join's part starts, when another timeline saw more of the stream than this one
        #: does (``iter_keyframes``: every packet, against key frames only); else after ``last``
        self.anchors: collections.deque[float] = collections.deque()
        self._undo: tuple[float, float] | None = None  # (offset, last) before an unanchored join

    def __call__(self, raw: float) -> float:
        if self._undo is not None:
            offset, before = self._undo
            self._undo = None
            if raw + offset >= before - _TIME_RESET_S:  # the old timeline goes on: that frame was a stray
                self.offset, self.joins = offset, self.joins - 1
        time = raw + self.offset
        if self.last is not None:
            # a join another timeline saw (anchored) also where this frame does not go back a second: parts
            # with one key frame each (screen recordings) start at the same time, and --fast saw one part
            if time < self.last - _TIME_RESET_S or self.anchors and time <= self.last:
                anchor = self.anchors.popleft() if self.anchors else None
                start = anchor if anchor is not None else self.last + self.step
                self._undo = (self.offset, self.last) if anchor is None else None  # anchored: sure
                self.offset += start - time
                time = start
                self.joins += 1
            time = max(time, self.last)
        self.last = time
        return time


def _log_joins(path: Path, joins: int) -> None:
    if joins:
        log.warning("%s: the timestamps start again %d time(s) (recordings joined end to end?); "
                    "each part is captioned after the one before it", path, joins)


class _SampleClock:
    """Which decoded frames are samples: the first one, then the first at or after each ``k / fps``.

    Both readers (every frame, key frames only) sample through it, so they agree on
    what "``fps`` samples per second" means.
    """

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self.eps = _sample_eps(fps)
        self.next_time = -math.inf  # the first frame is always sampled

    def due(self, time: float) -> bool:
        return time + self.eps >= self.next_time

    def take(self, time: float) -> None:
        """``time`` was sampled: the next sample is due at the next multiple of ``1 / fps``."""
        self.next_time = (math.floor((time + self.eps) * self.fps) + 1) / self.fps


#: Added to "no such file" when the name is a URL: the tool never downloads (it runs offline).
URL_HINT = " (a URL: captioner reads local files only; download it first)"


def no_such_file(path: str | Path, what: str = "file") -> str:
    """``<path>: no such file``, a URL as typed (a ``Path`` keeps ``https://x`` as ``https:/x``, ``file:///x``
    as ``file:/x``) and why it is no file here."""
    if not looks_like_url(path):
        return f"{path}: no such {what}"
    local = re.match(r"(?i)file:(/+.*)", str(path))
    if local:  # a local file written as a URL: its path is what to give
        return f"file://{local.group(1)}: no such {what} (a file: URL: give the path itself, {local.group(1)})"
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]+):/(?!/)", r"\1://", str(path)) + f": no such {what}" + URL_HINT


def looks_like_url(path: str | Path) -> bool:
    """Whether a name the user gave is a URL (``https://...``, ``rtsp://...``), which a ``Path`` keeps as ``https:/...``."""
    return re.match(r"[A-Za-z][A-Za-z0-9+.-]+:/", str(path)) is not None


def _check_file(path: Path, given: object = None) -> None:
    """Reject what is plainly not a video file before OpenCV sees it.

    OpenCV answers every one of these with the same silent ``isOpened() ==
    False`` (or, for a FIFO, by blocking), which would leave the user guessing.
    """
    if isinstance(given, (str, bytes)) and not given:  # Path("") is ".": caption_video("") said ".: is a directory"
        raise VideoError("an empty path is no video file name")
    try:
        if not path.exists():
            raise VideoError(no_such_file(path))
        if path.is_dir():
            raise VideoError(f"{path}: is a directory, not a video file")
        if not path.is_file():
            raise VideoError(f"{path}: not a regular file")
        if path.stat().st_size == 0:
            raise VideoError(f"{path}: empty file")
        with path.open("rb") as fh:
            fh.read(1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise VideoError(f"{path}: cannot read file ({reason.lower()})") from exc


def _ffmpeg_name(path: Path) -> str:
    """``path`` absolute, as FFmpeg (OpenCV's and PyAV's) is given it: FFmpeg reads a relative name that begins
    "file:" or "http:" as a protocol, and captioned another file ("file:clip.mp4" read clip.mp4) or looked the name
    up on the network. Captioner reads local files only. Joined to the working folder, not tidied: os.path.abspath
    took "link/../clip.mp4" as "clip.mp4" by its text, another file than the system's."""
    name = os.fspath(path)
    return name if os.path.isabs(name) else os.path.join(os.getcwd(), name)


@contextlib.contextmanager
def _opencv_name(path: Path) -> Iterator[str]:
    """``path`` as a name OpenCV can take, for as long as it takes to open the file.

    A file name that is not valid UTF-8 (a Latin-1 name from an old disk, which Python
    keeps as lone surrogates) crashes OpenCV's Python binding with a segmentation fault.
    Such a file is opened through a symlink with a plain name in a temporary folder,
    removed as soon as FFmpeg holds the file open.
    """
    name = _ffmpeg_name(path)
    if utf8_name(name):
        yield name
        return
    suffix = path.suffix if path.suffix.isascii() and path.suffix.isprintable() else ""

    def no_link(exc: OSError) -> VideoError:  # no symlinks here (some Windows setups): say what to do
        return VideoError(f"{path}: the file name is not valid UTF-8 and no link to it could be made "
                          f"({exc.strerror or first_line(exc)}); rename the file")

    try:  # no temporary folder can be written (a full disk): a traceback that ended the other videos' run
        temporary = tempfile.TemporaryDirectory(prefix="captioner-")
    except OSError as exc:
        raise no_link(exc) from None
    with temporary as folder:
        link = os.path.join(folder, "video" + suffix)
        try:
            os.symlink(name, link)  # (not abspath: link/../clip.mp4 is not ./clip.mp4)
        except OSError as exc:
            raise no_link(exc) from None
        yield link


def _open_capture(path: Path, timeout_s: float) -> Any:
    """Open ``path`` with OpenCV, preferring FFmpeg and bounding open/read time.

    FFmpeg is asked for explicitly because ``CAP_ANY`` also tries the image
    sequence backend, which reads a ``%`` in a file name as a pattern. The
    timeouts must be passed as open parameters: setting them on an opened
    capture is ignored by the FFmpeg backend. Builds that reject the
    parameters get a second, plain open. Tests replace this function to
    observe or fake the capture.
    """
    quiet_native_logs()  # FFmpeg's complaints about a broken file went to stderr: the library never prints
    api = cv2.CAP_ANY
    registry = getattr(cv2, "videoio_registry", None)
    if registry is not None and hasattr(cv2, "CAP_FFMPEG") and registry.hasBackend(cv2.CAP_FFMPEG):
        api = cv2.CAP_FFMPEG
    msec = max(1, int(timeout_s * 1000))
    params: list[int] = []
    for name in ("CAP_PROP_OPEN_TIMEOUT_MSEC", "CAP_PROP_READ_TIMEOUT_MSEC"):
        if hasattr(cv2, name):
            params += [getattr(cv2, name), msec]
    with _opencv_name(path) as name:
        if params:
            try:
                cap = cv2.VideoCapture(name, api, params)
                if cap.isOpened():
                    return cap
                cap.release()
            except cv2.error as exc:
                log.debug("%s: open with timeouts failed (%s); retrying without", path, exc)
        try:
            return cv2.VideoCapture(name, api)
        except cv2.error as exc:
            raise VideoError(f"{path}: not a video file or unsupported codec") from exc


def _read_info(path: Path, cap: Any) -> VideoInfo:
    """Metadata from an opened capture, with impossible values replaced by 'unknown'."""
    width = _int_prop(cap, cv2.CAP_PROP_FRAME_WIDTH)
    height = _int_prop(cap, cv2.CAP_PROP_FRAME_HEIGHT)
    frame_count = _int_prop(cap, cv2.CAP_PROP_FRAME_COUNT)
    fps = _float_prop(cap, cv2.CAP_PROP_FPS)
    if fps == FALLBACK_FPS or fps > MAX_PLAUSIBLE_FPS:  # FFmpeg's default, or nonsense: a raw stream's?
        raw = _raw_timing(path)
        if raw is not None:
            fps, frame_count = raw
    if fps > MAX_PLAUSIBLE_FPS:
        log.debug("%s: container reports %.1f fps; treating the frame rate as unknown", path, fps)
        fps = 0.0
    duration = frame_count / fps if frame_count > 0 and fps > 0 else 0.0
    aspect = _float_prop(cap, cv2.CAP_PROP_SAR_NUM) / (_float_prop(cap, cv2.CAP_PROP_SAR_DEN) or math.inf)
    if round(_float_prop(cap, getattr(cv2, "CAP_PROP_ORIENTATION_META", -1))) % 180 == 90:
        aspect = 1.0 / aspect if aspect else 0.0  # frames turned upright: the stored width is now their height
    return VideoInfo(path=path, width=width, height=height, fps=fps,
                     frame_count=frame_count, duration=duration,
                     pixel_aspect=aspect if 0.2 <= aspect <= 5.0 else 1.0)


#: Codecs (OpenCV's FOURCC) of still pictures that FFmpeg opens as a one-frame stream. BMP reports none.
_PICTURE_CODECS = frozenset({b"MJPG", b"MPNG", b"webp", b"tiff", b"gif ", b"\x00\x00\x00\x00"})


def _fourcc(cap: Any) -> bytes:
    code = _int_prop(cap, cv2.CAP_PROP_FOURCC)
    return code.to_bytes(4, "little") if code < 2 ** 32 else b""


def _float_prop(cap: Any, prop: int) -> float:
    """A capture property as a finite non-negative float (0.0 for unknown/unsupported)."""
    try:
        value = float(cap.get(prop))
    except (cv2.error, TypeError, ValueError):
        return 0.0
    return value if math.isfinite(value) and value > 0 else 0.0


def _int_prop(cap: Any, prop: int) -> int:
    """A capture property as a non-negative int (backends say -1 or NaN for unknown)."""
    return int(round(_float_prop(cap, prop)))


def _grab(cap: Any, skipped: list[int] | None = None) -> bool:
    """Advance to the next frame that decodes, past up to ``_GRAB_ATTEMPTS`` failed reads (a damaged
    stretch); ``skipped`` (one number) counts the failed reads that a decoded frame followed."""
    for attempt in range(_GRAB_ATTEMPTS):
        try:
            if cap.grab():
                if skipped is not None:
                    skipped[0] += attempt
                return True
        except cv2.error as exc:
            log.debug("grab() raised: %s", exc)
    return False


def _frame_time(cap: Any, index: int) -> float | None:
    """Seconds of the frame just grabbed, as the stream says (``_Timeline`` keeps them from going back), or
    None where it says nothing.

    After ``grab()`` FFmpeg's ``CAP_PROP_POS_MSEC`` is the presentation time of
    that frame (relative to the stream start). Backends without timestamps
    return 0 or -1 for every frame, and FFmpeg returns 0 for the last frame of a
    raw MPEG-2 stream (the one flushed out of the decoder at the end).
    """
    try:
        msec = float(cap.get(cv2.CAP_PROP_POS_MSEC))
    except (cv2.error, TypeError, ValueError):
        msec = math.nan
    if math.isfinite(msec) and (msec > 0 or (index == 0 and msec == 0)):
        return msec / 1000.0
    return None


def _retrieve(cap: Any) -> np.ndarray | None:
    """Decode the grabbed frame to an RGB uint8 array, or None if it will not decode."""
    try:
        ok, image = cap.retrieve()
        if not ok or image is None or image.size == 0:
            return None
        return _to_rgb(image)
    except cv2.error as exc:
        log.debug("retrieve() raised: %s", exc)
        return None


def _to_rgb(image: np.ndarray) -> np.ndarray:
    """OpenCV's BGR (or grey/BGRA, from unusual backends) as contiguous RGB uint8."""
    if image.dtype != np.uint8:
        if image.dtype == np.uint16:
            image = (image >> 8).astype(np.uint8)
        else:
            image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def prefetch(frames: Iterator[Frame], depth: int = 32) -> Iterator[Frame]:
    """Run a frame iterator in a background thread, ``depth`` frames ahead.

    Decoding (OpenCV/FFmpeg) and encoding (torch) both release the GIL, so with
    a reader thread the next frames decode while the current batch is encoded: the
    two costs overlap instead of adding up. The bounded queue keeps memory flat.
    Errors raised while decoding are re-raised in the consumer; closing the
    consumer (or an exception there, e.g. Ctrl-C) stops the reader.
    """
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    done = object()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def reader() -> None:
        try:
            for frame in frames:
                if not put(frame):
                    return
            put(done)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(exc)

    thread = threading.Thread(target=reader, name="captioner-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def _upright(frame: Any) -> np.ndarray:
    """A PyAV frame as RGB pixels the way players show it: turned by the stream's display rotation.

    Phones store portrait video as landscape pixels plus a rotation in the container;
    OpenCV applies it (``iter_frames`` sees the picture upright), PyAV leaves it to the
    caller. Without this, ``--fast`` captioned a phone video lying on its side.
    ``frame.rotation`` (PyAV 15 and later) is counter-clockwise degrees, as ``np.rot90`` turns.
    """
    image = _over_white(frame.to_ndarray(format="rgba")) if _has_alpha(getattr(frame, "format", None)) \
        else frame.to_ndarray(format="rgb24")
    matrix = _display_matrix(frame)
    if matrix is not None:
        return _displayed(image, matrix)
    quarter = round(float(getattr(frame, "rotation", 0) or 0) / 90.0) % 4
    return np.ascontiguousarray(np.rot90(image, quarter)) if quarter else image


def _transparent(alpha: np.ndarray) -> bool:
    """Whether an alpha channel shows anything through: not all 255 (opaque), nor all 0 (an unused fourth byte, as a
    32-bit BI_RGB AVI from a screen grabber has, not a picture to blank out)."""
    return bool(alpha.any()) and int(alpha.min()) < 255


def _over_white(rgba: np.ndarray) -> np.ndarray:
    """RGBA pixels composited over white, as photos are (a logo clip's transparent ground was black), where the
    alpha is transparency (``_transparent``)."""
    alpha = rgba[:, :, 3]
    if not _transparent(alpha):
        return np.ascontiguousarray(rgba[:, :, :3])
    a = alpha[:, :, None].astype(np.float32) / 255.0
    return np.minimum(rgba[:, :, :3] * a + 255.0 * (1.0 - a) + 0.5, 255.0).astype(np.uint8)


def _presentation(frame: Any) -> tuple[bool, int]:
    """A decoded PyAV frame's place in presentation order (frames without a timestamp keep their order, last)."""
    pts = getattr(frame, "pts", None)
    return pts is None, pts or 0


def _has_alpha(fmt: Any) -> bool:
    """Whether a PyAV pixel format carries transparency (yuva420p, rgba, ya8, gbrap, ...: 2 or 4 components)."""
    return fmt is not None and len(getattr(fmt, "components", ())) in (2, 4)


def _display_matrix(frame: Any) -> tuple[int, ...] | None:
    """A PyAV frame's display matrix (FFmpeg's nine 32-bit numbers), or None."""
    for data in getattr(frame, "side_data", ()):
        if str(getattr(data, "type", "")).endswith("DISPLAYMATRIX"):
            raw = bytes(data)
            return struct.unpack("9i", raw[:36]) if len(raw) >= 36 else None
    return None


def _mirrored(matrix: Sequence[int]) -> bool:
    """Whether a display matrix mirrors the picture (its 2 x 2 part has a negative determinant)."""
    return matrix[0] * matrix[4] - matrix[1] * matrix[3] < 0


def _displayed(image: np.ndarray, matrix: Sequence[int]) -> np.ndarray:
    """``image`` as a display matrix shows it: quarter turns and mirrors (a shown x is ``m0 x + m3 y``, a shown y
    ``m1 x + m4 y``). ``frame.rotation`` says only the turn: a mirrored front-camera recording came out upside down."""
    a, b, c, d = (int(np.sign(matrix[k])) for k in (0, 1, 3, 4))
    if a == 0 and d == 0 and b and c:  # x and y exchanged
        image = np.swapaxes(image, 0, 1)
        rows, columns = b < 0, c < 0
    else:
        rows, columns = d < 0, a < 0
    if rows:
        image = image[::-1]
    if columns:
        image = image[:, ::-1]
    return np.ascontiguousarray(image)


def iter_keyframes(path: str | Path, fps: float, *, stats: DecodeStats | None = None,
                   keys_only: bool = True) -> Iterator[Frame]:
    """Fast mode: decode only the key frames (PyAV), at most ``fps`` of them per second.

    ``keys_only=False``: every frame decoded, sampled as ``iter_frames`` samples (``read_frames`` reads so the
    streams OpenCV shows otherwise than players: ``pyav_reason``).

    Every other frame of an H.264/HEVC stream depends on its neighbours, so plain
    sampling must decode them all; key frames decode on their own. Encoders place
    them every few seconds and at most scene cuts, so they are a cheap, shot-aware
    sample: the bench video decodes 11x faster than a full grab loop. The cost is
    sampling density: one frame per key-frame interval (logged).

    Every packet is still read (not decoded), so ``stats`` learns where the stream
    really ends, as ``iter_frames`` does: its ``end_time`` is the last packet's end,
    and ``short`` is set whenever the packets carry timestamps (their end is then the
    picture's end, whatever the container's length says; packets an edit list hides are
    not counted). A packet that fails to decode is skipped; a stream
    that cannot be read further ends the iteration, keeping what decoded.
    """
    try:
        import av
    except ImportError:
        raise VideoError("--fast needs PyAV: pip install av") from None
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"sampling fps must be a positive number, got {fps!r}")
    stats = stats if stats is not None else DecodeStats()
    p = Path(path)
    _check_file(p, path)
    try:
        container = av.open(_ffmpeg_name(p))
    except Exception as exc:  # PyAV raises its own error types for every way a file can be bad
        raise VideoError(f"{p}: not a video file or unsupported codec ({exc.__class__.__name__})") from None
    with container:
        if not container.streams.video:
            raise VideoError(f"{p}: no video stream")
        stream = container.streams.video[0]
        if keys_only:
            stream.codec_context.skip_frame = "NONKEY"
        time_base = float(stream.time_base) if stream.time_base else 0.0
        rate = _stream_rate(_raw_rate(container, stream) or float(stream.average_rate or 0))
        announced = int(stream.frames or 0)
        # times on the player's clock: from the container's start (a video that starts after its sound
        # starts late; a cut file's hidden pre-roll lies before 0), else from the first packet
        origin: float | None = _container_start(container)
        if time_base and origin is not None and stream.duration and stream.start_time is not None:
            stats.announced_end = float((stream.start_time + stream.duration) * time_base) - origin
        timed = False  # whether any packet had a timestamp
        # AVI stores no presentation times: FFmpeg makes them up from the decode times plus the decoder's delay,
        # one frame for H.264 even without B-frames, so every key frame and the end came a frame late. Frame
        # ``n`` of an AVI is shown at ``n`` frames: that delay (the first packet's) comes off every time.
        delay: float | None = None if "avi" in _format_names(container) else 0.0
        clock = _SampleClock(fps)
        # Joined recordings (see _Timeline): found on the packets' decode times, which only go forward
        # within a recording (a presentation time may step back: B-frames come after what they precede).
        # A join's part starts one frame after the latest presentation time before it, as in iter_frames;
        # the key frames' timeline takes that start from the packets, which saw every frame.
        frame_times = _Timeline(1.0 / rate)
        offset, last_dts, shown_until = 0.0, None, 0.0
        n, bad, stopped, hidden = 0, 0, "", 0
        longest_gap, last_time = 0.0, 0.0  # the longest stretch the key frames leave unseen (a warning below)
        # Frame numbers count every packet, decoded or not (``Frame.index`` is the frame's place in
        # the stream, as iter_frames gives it); key packets wait here for the frame they decode to
        # (a decoder may return it a few packets later).
        position, keys = 0, collections.deque()
        ignores_skip = False
        shown_frames = 0  # frames decoded (every-frame mode: a frame's number, in the order they are shown)
        shown: list[float] = []  # the times of the packets not yet past the last sample (``Frame.since``)
        untimed = False  # a packet without a timestamp came (a raw .h264): ``since`` unknown from there on
        first_after: float | None = None  # every-frame mode: the first frame decoded after the last sample
        held: tuple[Any, float, int] | None = None  # every-frame mode: the last frame not sampled (frame, time, index)

        def sample(frame: Any) -> Iterator[Frame]:
            """A decoded frame's sample, if it is one (sampling, ``since``, the frame's number)."""
            nonlocal shown_frames, first_after, n, shown, longest_gap, last_time, held
            if keys_only:
                index = keys.popleft() if keys else max(0, position - 1)
            else:
                index, shown_frames = shown_frames, shown_frames + 1
            # no timestamps: the frame number is the only clock, as in iter_frames
            t = frame_times(max(0.0, float(frame.time) - (origin or 0.0) - (delay or 0.0))
                            if frame.time is not None else index / rate)
            if not clock.due(t):
                first_after = t if first_after is None else first_after
                if not keys_only:
                    held = (frame, t, index)
                return
            if held is not None and t - clock.next_time > 0.5 / fps:
                # the frame on screen when this sample came due is the one before it, held (a screen recording
                # stores a burst of frames as the picture changes, then holds the last): sampled too, else the
                # cut went half-way to the next burst, seconds from where the picture changed (``pyav_reason``)
                yield from emit(*held)
            held = None
            yield from emit(frame, t, index)

        def emit(frame: Any, t: float, index: int) -> Iterator[Frame]:
            """``frame`` at ``t`` as a sample."""
            nonlocal first_after, n, shown, longest_gap, last_time
            n += 1
            stats.sampled = n
            clock.take(t)
            if not keys_only:  # every frame decoded: the first after the last sample, as iter_frames says
                since = t if first_after is None else min(first_after, t)
            elif frame_times.joins or untimed:  # (a raw stream's packets carry no time: every cut was late)
                since = None
            else:
                # the packets between the last sample and this one, decoded or not: the first is the earliest
                # this picture can have come (on the packets' clock, the frames' own unless parts were joined)
                since = min([t, *(p for p in shown if last_time + _TIME_EPS < p <= t + _TIME_EPS)])
            shown = [p for p in shown if p > t + _TIME_EPS]
            first_after = None
            longest_gap, last_time = max(longest_gap, t - last_time), t
            yield Frame(index=index, time=t, image=_upright(frame), since=since)

        pending: list[Any] = []  # decoded key frames held back to come out in presentation order

        def in_order(frames: Sequence[Any], final: bool) -> list[Any]:
            """Key frames in presentation order. Skipping the frames between them, a decoder may give an open-GOP
            HEVC's key frames out of order (the one at 0 s after the one at 8.3 s: the first was lost, held back by
            the timeline); a few are held and sorted. Joined recordings, whose times go back, keep decode order."""
            nonlocal pending
            if not keys_only or frame_times.joins or offset:
                out, pending = [*pending, *frames], []
                return out
            pending = sorted([*pending, *frames], key=_presentation)
            keep = 0 if final else min(len(pending), _KEY_REORDER)
            out, pending = pending[:len(pending) - keep], pending[len(pending) - keep:]
            return out

        try:
            packets = container.demux(stream)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except Exception as exc:  # the container cannot be read further: keep what decoded
                    stopped = exc.__class__.__name__
                    break
                if packet.size and getattr(packet, "is_discard", False):
                    hidden += 1  # before the cut of a file cut with -ss -c copy: no player shows it
                elif packet.size:
                    if packet.is_keyframe:
                        keys.append(position)
                    position += 1
                    if packet.pts is not None and time_base:
                        length = packet.duration * time_base if packet.duration else 1.0 / rate
                        stats.decoded += 1
                        timed = True
                        if origin is None:
                            origin = float(packet.pts * time_base)
                        if delay is None:  # the first packet's (an AVI's)
                            ahead = packet.pts - packet.dts if packet.dts is not None else 0
                            delay = max(0.0, float(ahead * time_base))
                        pts = float(packet.pts * time_base) - origin - delay
                        if packet.dts is not None:  # an MKV's first packets have none (their pts are reordered)
                            dts = float(packet.dts * time_base) - origin
                            if last_dts is not None and dts + offset < last_dts - _TIME_RESET_S:
                                offset = shown_until + 1.0 / rate - pts
                                frame_times.anchors.append(shown_until + 1.0 / rate)
                            last_dts = dts + offset
                        shown_until = max(shown_until, pts + offset)
                        stats.end_time = max(stats.end_time, pts + offset + length)
                        if pts + offset > last_time:
                            shown.append(pts + offset)
                    else:
                        untimed = True
                if ignores_skip and not packet.is_keyframe:
                    continue
                try:
                    frames = packet.decode()
                except Exception:  # a damaged packet: skip it, the next key frame may be fine
                    bad += 1
                    if keys and packet.size and packet.is_keyframe:
                        keys.pop()  # it gives no frame
                    continue
                if keys_only and not packet.is_keyframe and any(not frame.key_frame for frame in frames):
                    # a decoder that ignores skip_frame (FFmpeg's VP9) decoded every frame: from here on only the
                    # key packets reach it (each decodes alone); those it already gave are shown as usual
                    ignores_skip = True
                for frame in in_order(frames, final=not packet.size):
                    yield from sample(frame)
            for frame in in_order([], final=True):  # what a stream that stopped early still held
                yield from sample(frame)
            if held is not None and stats.end_time - clock.next_time > 0.5 / fps:  # the last frame, held to the end
                yield from emit(*held)
        finally:  # also where the caller stopped reading (``within``'s end), past a join
            _log_joins(p, frame_times.joins)
        if not time_base or not timed:  # no packet timestamps: the stream ends after its last frame
            stats.decoded = position
            stats.end_time = position / rate
        elif stream.duration and stream.start_time is not None and not frame_times.joins:
            # the last packet's length may be another's (MP4 lists lengths in decode order) or a guess
            end = float((stream.start_time + stream.duration) * time_base) - (origin or 0.0)
            if shown_until < end < stats.end_time - _TIME_EPS:
                stats.end_time = end
        stats.finished = True
        # the container's length where the picture ends well before it, and its tail does not say the sound
        # outlasts the picture: an MKV or WebM cut off (no frame count to fall short of) was captioned in part, unsaid
        announced_length = 0.0
        if timed and not announced and not stopped and not frame_times.joins and container.duration:
            length = container.duration / 1e6
            if math.isfinite(length) and stats.end_time < _SHORT_STREAM_RATIO * length:
                tail = _picture_end(container, stream)  # None: every stream stops early
                if tail is None or stats.end_time < _SHORT_STREAM_RATIO * (tail - (origin or 0.0)):
                    announced_length = length
    if not n:
        # PyAV's FFmpeg has no decoder for some files OpenCV reads (an animated WebP): the normal reader may
        raise VideoError(f"{p}: no decodable {'key ' if keys_only else ''}frames" + (f" ({stopped})" if stopped else "")
                         + ("; try without --fast" if keys_only else ""))
    announced = max(0, announced - hidden)
    counted_short = announced > 0 and stats.decoded < announced
    # every packet was read: where their timestamps end, the picture ends (an MKV announces no frame
    # count, a cut file's count includes the frames hidden before the cut, and the container's length
    # counts sound that may outlast the picture)
    stats.short = counted_short or timed
    if stopped or bad or counted_short:
        log.warning("%s: the stream ends early or is damaged (%d packet(s) of %s announced frames read%s); "
                    "captioning the %d %sframe(s) that decoded", p, stats.decoded, announced or "?",
                    f", {bad} undecodable" if bad else "", n, "key " if keys_only else "")
    elif announced_length:
        log.warning("%s: the picture ends at %.1f s of the %.1f s the container announces; the file may be damaged "
                    "or truncated, captioning the %d %sframe(s) that decoded", p, stats.end_time, announced_length, n,
                    "key " if keys_only else "")
    longest_gap = max(longest_gap, stats.end_time - last_time)
    if keys_only and longest_gap > FAST_GAP_WARNING_S:
        # screen recorders and intra-refresh streams put one key frame at the start: --fast then
        # captions a whole recording from its first frame, and the captions would not say so
        log.warning("%s: --fast: %d key frame(s) in %.0f s, %.0f s without one; captions there repeat the "
                    "last key frame (run without --fast to look every %.3g s)", p, n, stats.end_time, longest_gap,
                    1.0 / fps)

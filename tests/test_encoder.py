"""The frozen encoder: shapes, preprocessing, and the ONNX Runtime path against torch."""

from __future__ import annotations

import json
import os
import logging
import time
from pathlib import Path

import numpy as np
import pytest

from captioner import encoder as encoder_mod
from captioner.config import EncoderConfig
from captioner.encoder import Encoder
from videos import shot_frame


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(1)
    imgs = [shot_frame(look, i, (96, 54)) for i, look in enumerate(["red", "checker", "stripes", "gradient"])]
    imgs.append(rng.integers(0, 256, (300, 200, 3), dtype=np.uint8))  # portrait, odd size
    return imgs


def test_torch_encoder_outputs(frames):
    enc = Encoder(EncoderConfig(), backend="torch")
    out = enc.encode(frames)
    assert out.grid.shape == (5, 49, 1280) and out.pooled.shape == (5, 1280) and out.probs.shape == (5, 1000)
    assert np.allclose(out.probs.sum(-1), np.ones(5), atol=1e-4)
    assert np.allclose(out.pooled, out.grid.mean(1), atol=1e-5)


def test_the_torch_encoder_gives_the_caller_its_thread_count_back(frames):
    """Encoder(threads=1) on torch set torch's process-wide thread count and left it: the calling program's
    own torch ran on one thread from then on."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        enc = Encoder(EncoderConfig(), backend="torch", threads=1)
        model = enc.torch_model()
        seen = []
        extract = model.extract_features
        model.extract_features = lambda x: (seen.append(torch.get_num_threads()), extract(x))[1]
        assert torch.get_num_threads() == 3  # building the model leaves it
        enc.encode(frames[:1])
        assert seen == [1] and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_preprocessing_is_the_normalised_batch_channels_first_bit_for_bit(frames):
    """The training features were extracted through the same method; a faster way to compute it must not
    change a single value (a cue's caption can hang on the last bit of a beam's score)."""
    enc = Encoder(EncoderConfig(), backend="torch")
    size = enc.config.image_size
    batch = np.stack([enc.resize(f) for f in frames]).astype(np.float32)
    mean = np.asarray(enc.config.mean, np.float32) * np.float32(255)
    std = np.asarray(enc.config.std, np.float32) * np.float32(255)
    expected = ((batch - mean) / std).transpose(0, 3, 1, 2)
    got = enc.preprocess(frames)
    assert got.shape == (len(frames), 3, size, size) and got.dtype == np.float32 and got.flags.c_contiguous
    assert np.array_equal(got, expected)


def test_onnx_encoder_matches_torch_reference(frames, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime", reason="ONNX Runtime not installed: the torch path is used")
    pytest.importorskip("onnx", reason="onnx not installed: cannot export the encoder")
    monkeypatch.setenv("CAPTIONER_CACHE", str(tmp_path))
    ref = Encoder(EncoderConfig(), backend="torch").encode(frames)
    onnx = Encoder(EncoderConfig(int8=False), backend="onnx")
    assert onnx.backend == "onnx" and onnx.precision == "float32"
    out = onnx.encode(frames)
    assert np.allclose(out.grid, ref.grid, atol=1e-3, rtol=1e-3)
    assert np.allclose(out.probs, ref.probs, atol=1e-4)
    assert list((tmp_path / "encoders").glob("*.onnx"))  # exported once, cached
    assert not list((tmp_path / "encoders").glob(".*tmp"))


def test_two_encoders_made_at_once_on_a_fresh_cache_export_once_and_both_run_onnx(tmp_path, monkeypatch):
    """Two Captioners made at once (two threads) exported side by side (torch.onnx.export is not thread-safe):
    one export failed and that Captioner silently ran the slower torch encoder, and torch's warnings reached
    stderr. The export is a stand-in that copies a real one (made once per machine) and notes overlaps."""
    pytest.importorskip("onnxruntime", reason="ONNX Runtime not installed: the torch path is used")
    pytest.importorskip("onnx", reason="onnx not installed: cannot export the encoder")
    import shutil
    import threading

    real = encoder_mod.onnx_export_path("efficientnet-lite0")  # the machine's own cache
    if not real.exists() or not encoder_mod._export_intact(real):
        Encoder(EncoderConfig(), backend="onnx")
    monkeypatch.setenv("CAPTIONER_CACHE", str(tmp_path))
    guard = threading.Lock()
    running, calls, overlaps = [0], [0], [0]

    def export(encoder, config, path):
        with guard:
            running[0] += 1
            calls[0] += 1
            overlaps[0] += running[0] > 1
        time.sleep(0.3)  # a real export takes seconds: long enough for the other thread to arrive
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(real, path)
        with guard:
            running[0] -= 1

    monkeypatch.setattr(encoder_mod, "_export", export)
    backends = []
    threads = [threading.Thread(target=lambda: backends.append(Encoder(EncoderConfig()).backend)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (backends, calls[0], overlaps[0]) == (["onnx", "onnx"], 1, 0)


def test_damaged_onnx_cache_is_exported_again(frames, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime", reason="ONNX Runtime not installed: the torch path is used")
    pytest.importorskip("onnx", reason="onnx not installed: cannot export the encoder")
    monkeypatch.setenv("CAPTIONER_CACHE", str(tmp_path))
    good = Encoder(EncoderConfig(int8=False), backend="onnx").encode(frames[:2])
    (cached,) = (tmp_path / "encoders").glob("*.onnx")
    cached.write_bytes(cached.read_bytes()[:1000])  # a copy that was cut off
    again = Encoder(EncoderConfig(int8=False), backend="onnx")
    assert again.backend == "onnx"
    assert np.allclose(again.encode(frames[:2]).probs, good.probs, atol=1e-5)
    assert cached.stat().st_size > 1000


def test_an_export_overwritten_in_place_is_exported_again(frames, tmp_path, monkeypatch):
    """Bytes overwritten inside the cached export: ONNX Runtime still opened it, and every run failed
    ('pooled features contain NaN') until the cache was deleted by hand."""
    pytest.importorskip("onnxruntime", reason="ONNX Runtime not installed: the torch path is used")
    pytest.importorskip("onnx", reason="onnx not installed: cannot export the encoder")
    monkeypatch.setenv("CAPTIONER_CACHE", str(tmp_path))
    good = Encoder(EncoderConfig(int8=False), backend="onnx").encode(frames[:2])
    (cached,) = (tmp_path / "encoders").glob("*.onnx")
    data = bytearray(cached.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 200_000] = b"\xff" * 200_000  # the same size, other weights
    cached.write_bytes(bytes(data))
    again = Encoder(EncoderConfig(int8=False), backend="onnx")
    assert again.backend == "onnx" and np.allclose(again.encode(frames[:2]).probs, good.probs, atol=1e-5)
    os.utime(cached)  # a file only touched is trusted after one check, not exported again
    inode = cached.stat().st_ino
    Encoder(EncoderConfig(int8=False), backend="onnx")
    assert cached.stat().st_ino == inode  # an export replaces the file (a rename): a new inode


def _needs_int8() -> None:
    pytest.importorskip("onnxruntime", reason="ONNX Runtime not installed: the torch path is used")
    pytest.importorskip("onnx", reason="onnx not installed: cannot export the encoder")
    if encoder_mod.int8_ranges_path("efficientnet-lite0") is None:
        pytest.fail("captioner/data ships no int8 ranges for efficientnet-lite0")


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_int8_copy_is_a_quantized_encoder(frames, tmp_path, monkeypatch):
    """What --int8 runs, accepted whatever this CPU makes of it (the agreement check is the next test's)."""
    _needs_int8()
    monkeypatch.setenv("CAPTIONER_CACHE", str(tmp_path))
    monkeypatch.setattr(encoder_mod, "INT8_MIN_COSINE", -1.0)
    ref = Encoder(EncoderConfig(), backend="onnx")
    assert ref.precision == "float32"  # the default
    ref = ref.encode(frames)
    enc = Encoder(EncoderConfig(int8=True), backend="onnx")
    assert enc.precision == "int8"
    out = enc.encode(frames)
    assert out.grid.shape == ref.grid.shape and out.probs.shape == ref.probs.shape
    assert np.allclose(out.probs.sum(-1), 1.0, atol=1e-4)
    # quantized, not a copy of the float network
    assert not np.allclose(out.pooled, ref.pooled, atol=1e-4)
    assert len(list((tmp_path / "encoders").glob("*.int8-*.onnx"))) == 1
    assert not [p for p in (tmp_path / "encoders").iterdir() if p.name.startswith(".")]  # no temporary left


def test_int8_runs_only_where_it_agrees_with_float32(frames, tmp_path, monkeypatch, caplog):
    """On this machine's CPU: either the int8 copy runs and is close to float32, or the run
    warns and runs float32. (ONNX Runtime's int8 products saturate on some x86 CPUs: on an AVX2
    AMD EPYC the copy's features were at cosine 0.64 from float32's on these frames.)"""
    _needs_int8()
    monkeypatch.setenv("CAPTIONER_CACHE", str(tmp_path))
    ref = Encoder(EncoderConfig(), backend="onnx").encode(frames)
    with caplog.at_level(logging.WARNING, logger="captioner"):
        enc = Encoder(EncoderConfig(int8=True), backend="onnx")
    out = enc.encode(frames)
    if enc.precision == "int8":
        assert _cosine(out.pooled, ref.pooled).min() > 0.95
        assert "inaccurate on this CPU" not in caplog.text
    else:
        assert enc.precision == "float32"
        assert "the int8 encoder is inaccurate on this CPU" in caplog.text
        assert np.array_equal(out.probs, ref.probs)


@pytest.mark.parametrize("agreement, precision", [(0.5, "float32"), (0.99, "int8")])
def test_int8_agreement_decides_the_precision(frames, tmp_path, monkeypatch, caplog, agreement, precision):
    _needs_int8()
    monkeypatch.setenv("CAPTIONER_CACHE", str(tmp_path))
    seen = []

    def measured(quantized, reference, x):
        seen.append(x.shape)
        return agreement

    monkeypatch.setattr(encoder_mod, "int8_agreement", measured)
    with caplog.at_level(logging.WARNING, logger="captioner"):
        enc = Encoder(EncoderConfig(int8=True), backend="onnx")
    assert enc.precision == precision
    assert seen == [(5, 3, 224, 224)]  # the five probe pictures at the input size
    assert ("cosine 0.50 from float32's" in caplog.text) == (precision == "float32")
    assert len(list((tmp_path / "encoders").glob("*.int8-*.onnx"))) == 1  # the copy stays made either way


def test_int8_agreement_is_the_smallest_cosine():
    class Fixed:
        def __init__(self, pooled):
            self.pooled = np.asarray(pooled, np.float32)

        def run(self, names, feeds):
            assert names == ["pooled"] and set(feeds) == {"x"}
            return [self.pooled]

    same = Fixed([[1, 0], [0, 2]])
    assert encoder_mod.int8_agreement(same, same, np.zeros(1)) == pytest.approx(1.0)
    assert encoder_mod.int8_agreement(Fixed([[1, 0], [1, 1]]), same, np.zeros(1)) == pytest.approx(2 ** -0.5)
    probes = encoder_mod.probe_images(224)
    assert len(probes) == 5 and all(p.shape == (224, 224, 3) and p.dtype == np.uint8 for p in probes)
    assert len({p.tobytes() for p in probes}) == 5 and all(np.array_equal(a, b) for a, b in zip(probes, encoder_mod.probe_images(224)))


def test_int8_falls_back_to_float32_when_the_ranges_do_not_fit(frames, tmp_path, monkeypatch, caplog):
    _needs_int8()
    monkeypatch.setenv("CAPTIONER_CACHE", str(tmp_path / "cache"))
    shipped = json.loads(encoder_mod.int8_ranges_path("efficientnet-lite0").read_text())
    # an export whose tensor names differ: the range of one convolution's output is missing
    shipped["data"].pop(next(k for k in sorted(shipped["data"]) if k.endswith("Conv_output_0")))
    ranges = tmp_path / "ranges.json"
    ranges.write_text(json.dumps(shipped))
    monkeypatch.setattr(encoder_mod, "int8_ranges_path", lambda name, size=None: ranges)
    with caplog.at_level(logging.WARNING, logger="captioner"):
        enc = Encoder(EncoderConfig(int8=True), backend="onnx")
    assert enc.precision == "float32"
    assert "int8 encoder unavailable" in caplog.text
    ref = Encoder(EncoderConfig(int8=False), backend="onnx").encode(frames[:2])
    assert np.array_equal(enc.encode(frames[:2]).probs, ref.probs)
    assert not list((tmp_path / "cache" / "encoders").glob("*int8*"))


def test_damaged_int8_copy_is_quantized_again(frames, tmp_path, monkeypatch):
    _needs_int8()
    monkeypatch.setenv("CAPTIONER_CACHE", str(tmp_path))
    monkeypatch.setattr(encoder_mod, "INT8_MIN_COSINE", -1.0)  # whatever this CPU makes of it
    good = Encoder(EncoderConfig(int8=True), backend="onnx").encode(frames[:2])
    (cached,) = (tmp_path / "encoders").glob("*.int8-*.onnx")
    cached.write_bytes(cached.read_bytes()[:1000])
    again = Encoder(EncoderConfig(int8=True), backend="onnx")
    assert again.precision == "int8"
    assert np.array_equal(again.encode(frames[:2]).probs, good.probs)


def test_a_failed_export_leaves_no_temporary_file(tmp_path, monkeypatch):
    """An ONNX export that raises (disk full, a torch error) used to leave its ``.tmp`` file behind."""
    pytest.importorskip("onnxruntime", reason="ONNX Runtime not installed: the torch path is used")
    import torch

    monkeypatch.setenv("CAPTIONER_CACHE", str(tmp_path))

    def failing_export(model, args, f, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"half an onnx file")
        raise RuntimeError("No space left on device")

    monkeypatch.setattr(torch.onnx, "export", failing_export)
    with pytest.raises(encoder_mod.ModelError, match="No space left on device"):
        Encoder(EncoderConfig(int8=False), backend="onnx")
    assert list((tmp_path / "encoders").iterdir()) == []


def test_an_export_killed_outright_leaves_no_temporary_file_for_long(tmp_path):
    """A SIGKILL during the first export left ``.<export>.XXXX.tmp`` in ``encoders/`` for good; the next
    export removes one an hour old, and keeps a younger one (another process's export in progress)."""
    path = tmp_path / "lite0-224.onnx"
    old, young, other = (tmp_path / n for n in (".lite0-224.onnx.ab12cd34.captioner.tmp", ".lite0-224.onnx.ef56gh78.captioner.tmp",
                                                 ".lite1-240.onnx.ab12cd34.captioner.tmp"))
    for f in (old, young, other):
        f.write_bytes(b"half an onnx file")
    hours_ago = time.time() - 2 * encoder_mod.STALE_EXPORT_S
    os.utime(old, (hours_ago, hours_ago))
    os.utime(other, (hours_ago, hours_ago))
    session = encoder_mod.cached_session(lambda p: p.read_bytes(), path, lambda p: p.write_bytes(b"onnx"), "encoder")
    assert session == b"onnx"
    assert not old.exists() and young.exists() and other.exists()  # only this export's, only if old


def test_quantizing_keeps_the_rest_of_the_log(tmp_path, monkeypatch, caplog):
    """Making the int8 copy hides ONNX Runtime's advice only, not every log record of the process.

    The stand-in quantizer logs like ONNX Runtime's does (through the root logger and
    its own loggers) and, meanwhile, captioner logs a warning (another thread's, say):
    that one must arrive. Its output is no model, so the encoder falls back to float32.
    """
    _needs_int8()
    import shutil

    import onnxruntime.quantization as quantization
    import onnxruntime.quantization.shape_inference as shape_inference

    exported = encoder_mod.onnx_export_path("efficientnet-lite0")
    monkeypatch.setenv("CAPTIONER_CACHE", str(tmp_path))
    if exported.exists():  # spare the test an export: the float model is not what it is about
        encoder_mod.onnx_cache_dir().mkdir(parents=True)
        shutil.copyfile(exported, encoder_mod.onnx_export_path("efficientnet-lite0"))

    def quantize_static(src, dst, *args, **kwargs):
        logging.warning("Please consider to run pre-processing before quantization.")  # as ORT does
        logging.getLogger("onnxruntime.quantization.example").warning("ORT's own logger")
        logging.getLogger("captioner.elsewhere").warning("a warning of captioner's")
        Path(dst).write_bytes(b"not a model")

    monkeypatch.setattr(shape_inference, "quant_pre_process", lambda src, dst, *a, **k: shutil.copyfile(src, dst))
    monkeypatch.setattr(quantization, "quantize_static", quantize_static)
    handlers = list(logging.getLogger().handlers)
    # the captioner logger's own level too: an earlier test's `captioner ... -q` leaves it at ERROR (the CLI sets it
    # on each call), and then captioner's warning never reached the handler whatever the quantizing did
    caplog.set_level(logging.INFO, logger="captioner")
    with caplog.at_level(logging.INFO):
        enc = Encoder(EncoderConfig(int8=True), backend="onnx")
    messages = [r.getMessage() for r in caplog.records]
    assert "a warning of captioner's" in messages
    assert not [m for m in messages if "pre-processing" in m or "ORT's own" in m]
    assert enc.precision == "float32"
    assert logging.getLogger().handlers == handlers and logging.root.manager.disable == 0


@pytest.mark.parametrize("suffix", [".png", ".webp"])
def test_a_transparent_image_is_seen_over_white(tmp_path: Path, suffix) -> None:
    """A dark drawing whose shape lives in the alpha channel (a logo, line art): read without its
    alpha it was all black, and `captioner image` described a black picture."""
    import cv2

    bgra = np.zeros((64, 64, 4), np.uint8)
    bgra[16:48, 16:48, 3] = 255  # an opaque black square; the rest transparent (black underneath)
    bgra[0:8, :, 3] = 128  # a half-transparent band
    path = tmp_path / f"logo{suffix}"
    cv2.imwrite(str(path), bgra, [cv2.IMWRITE_WEBP_QUALITY, 101] if suffix == ".webp" else [])
    rgb = encoder_mod.load_image(str(path))
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    assert (rgb[12, 2] == 255).all() and (rgb[32, 32] == 0).all()
    assert (np.abs(rgb[4, 40].astype(int) - 127) <= 1).all()
    opaque = tmp_path / "photo.png"
    cv2.imwrite(str(opaque), np.full((8, 8, 3), 40, np.uint8))  # no alpha: as it is
    assert (encoder_mod.load_image(str(opaque)) == 40).all()


def _png_with_orientation(bgra: np.ndarray, orientation: int) -> bytes:
    """A PNG of ``bgra`` with an eXIf chunk whose Orientation tag is ``orientation`` (as phones' editors write)."""
    import struct
    import zlib

    import cv2

    png = cv2.imencode(".png", bgra)[1].tobytes()
    exif = b"MM\x00*\x00\x00\x00\x08" + b"\x00\x01" + b"\x01\x12\x00\x03\x00\x00\x00\x01" + struct.pack(">H", orientation) + b"\x00\x00" + b"\x00\x00\x00\x00"
    chunk = struct.pack(">I", len(exif)) + b"eXIf" + exif + struct.pack(">I", zlib.crc32(b"eXIf" + exif))
    at = png.index(b"IDAT") - 4
    return png[:at] + chunk + png[at:]


def test_transparency_is_seen_over_white_in_gifs_and_turned_pictures(tmp_path: Path) -> None:
    """A transparent GIF and a PNG with alpha and an EXIF orientation came out all black (the GIF was not asked
    for its alpha; the turned picture's alpha, decoded unturned, did not fit and was dropped)."""
    import cv2

    rng = np.random.default_rng(0)
    bgra = rng.integers(0, 256, (20, 40, 4), dtype=np.uint8)
    bgra[:, :, 3] = 0
    bgra[:, :10, 3] = 255  # an opaque band on the left; the rest transparent
    a = bgra[:, :, 3:].astype(np.float32) / 255.0
    over_white = (bgra[:, :, :3] * a + 255.0 * (1.0 - a) + 0.5).astype(np.uint8)
    turns = [lambda x: x, lambda x: x[:, ::-1], lambda x: x[::-1, ::-1], lambda x: x[::-1, :],
             lambda x: np.swapaxes(x, 0, 1), lambda x: np.rot90(x, -1), lambda x: np.rot90(x, 1),
             lambda x: np.swapaxes(x[::-1, ::-1], 0, 1)]
    for orientation in range(1, 9):
        path = tmp_path / f"turned{orientation}.png"
        path.write_bytes(_png_with_orientation(bgra, orientation))
        shown = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)  # turned as OpenCV turns it
        colour = bgra[:, :, :3]
        (turn,) = [t for t in turns if t(colour).shape == shown.shape and np.array_equal(t(colour), shown)]
        expected = cv2.cvtColor(np.ascontiguousarray(turn(over_white)), cv2.COLOR_BGR2RGB)
        assert np.array_equal(encoder_mod.load_image(str(path)), expected), orientation
    image = pytest.importorskip("PIL.Image")
    picture = image.new("RGBA", (40, 20), (0, 0, 0, 0))
    picture.paste((0, 0, 0, 255), (0, 0, 10, 20))
    picture.save(tmp_path / "logo.gif", transparency=0)
    rgb = encoder_mod.load_image(str(tmp_path / "logo.gif"))
    assert rgb.mean() == pytest.approx(255 * 0.75, abs=1) and (rgb[10, 5] == 0).all()


def test_without_torch_and_no_export_yet_is_one_line(tmp_path, tiny_model):
    """No ONNX export cached and no torch to make one: 'encoding with torch' then a ModuleNotFoundError traceback."""
    import subprocess
    import sys

    from clitools import subprocess_env
    from videos import make_video

    clip = make_video(tmp_path / "x.mp4", [("red", 1.0)]).path
    code = ("import sys\n"
            "sys.modules['torch'] = None\n"
            f"sys.argv = ['captioner', 'run', {str(clip)!r}, '--model', {str(tiny_model)!r}]\n"
            "from captioner import console\n"
            "console()\n")
    env = subprocess_env() | {"CAPTIONER_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith("error: the encoder's ONNX copy is not made yet (in ") and done.stderr.count("\n") == 1
    assert "needs torch: pip install torch==" in done.stderr and not (tmp_path / "x.srt").exists()


def _jpeg(bgr: np.ndarray, orientation: int = 1, params: tuple[int, ...] = ()) -> bytes:
    """``bgr`` as a JPEG (``cv2.imencode`` ``params``), with an EXIF Orientation tag unless it is 1."""
    import struct

    import cv2

    jpeg = cv2.imencode(".jpg", bgr, list(params))[1].tobytes()
    if orientation == 1:
        return jpeg
    exif = (b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01"
            + struct.pack(">H", orientation) + b"\x00\x00\x00\x00\x00\x00")
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + jpeg[2:]


def test_a_large_jpeg_is_decoded_reduced_to_what_the_encoder_needs(tmp_path: Path, monkeypatch) -> None:
    """captioner image decoded every photo whole: a 20000 x 20000 JPEG took 1.2 GB, a 50000 x 50000 one failed.
    A JPEG is decoded 2, 4 or 8 times smaller where its short side stays at least twice the encoder's input;
    the pixels are the whole decode's averaged, the EXIF orientation is applied as before, smaller photos and
    other formats are decoded as they were."""
    import cv2

    flags = []
    imdecode = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda data, flag: flags.append(flag) or imdecode(data, flag))
    ramp = np.linspace(0, 255, 6000, dtype=np.float32)
    bgr = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:4000, None], 255 - ramp[None, :]), -1).astype(np.uint8)
    cases = [  # (file, size asked, flag expected, shape expected)
        (_jpeg(bgr), 224, cv2.IMREAD_REDUCED_COLOR_8, (500, 750, 3)),  # 4000 / 8 = 500 >= 2 x 224
        (_jpeg(bgr, 6, (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)), 224, cv2.IMREAD_REDUCED_COLOR_8, (750, 500, 3)),  # turned
        (_jpeg(bgr), 512, cv2.IMREAD_REDUCED_COLOR_2, (2000, 3000, 3)),  # 4000 / 4 = 1000 < 2 x 512
        (_jpeg(bgr), None, cv2.IMREAD_COLOR, (4000, 6000, 3)),  # no size: as before
        (_jpeg(bgr[:800, :1200]), 224, cv2.IMREAD_COLOR, (800, 1200, 3)),  # 800 / 2 = 400 < 2 x 224
        (cv2.imencode(".png", bgr[:1000, :1000])[1].tobytes(), 224, cv2.IMREAD_COLOR, (1000, 1000, 3)),  # no JPEG
    ]
    for i, (data, size, flag, shape) in enumerate(cases):
        path = tmp_path / f"photo{i}.jpg"
        path.write_bytes(data)
        flags.clear()
        rgb = encoder_mod.load_image(str(path), size)
        assert flags[0] == flag and rgb.shape == shape, i
    whole = cv2.cvtColor(cv2.resize(bgr, (750, 500), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    (tmp_path / "photo.jpg").write_bytes(_jpeg(bgr))
    reduced = encoder_mod.load_image(str(tmp_path / "photo.jpg"), 224)
    assert np.abs(reduced.astype(int) - whole).mean() < 2  # JPEG's own error: the same picture

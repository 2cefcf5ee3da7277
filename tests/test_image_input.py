"""Photos as ``captioner image`` and ``load_image`` meet them: files that cannot be read, transparency
in every format that carries it, what native decoders write, formats in folders, arrays from callers."""

from __future__ import annotations

import os
import struct
import subprocess
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from captioner import encoder as encoder_mod
from captioner.encoder import load_image
from captioner.errors import CaptionerError, OutOfMemory
from clitools import captioner_command, cli, isolate_cli, subprocess_env  # noqa: F401  (isolate_cli is a fixture)
from videos import make_video, shot_frame


@pytest.fixture(autouse=True)
def _isolated(isolate_cli):
    yield


def _photo(path: Path, look: str = "red") -> Path:
    assert cv2.imwrite(str(path), cv2.cvtColor(shot_frame(look, 0, (64, 48)), cv2.COLOR_RGB2BGR))
    return path


def _over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """What a browser shows: straight alpha in 0..255 blended over white."""
    a = alpha.astype(np.float64)[..., None] / 255.0
    return rgb.astype(np.float64) * a + 255.0 * (1.0 - a)


# ---------------------------------------------------------------- files that cannot be read


def test_an_unreadable_photo_is_one_error_line_and_the_others_are_captioned(tmp_path, tiny_model, as_a_user) -> None:
    """A folder with one photo at mode 000 ended in a PermissionError traceback, nothing captioned; named on
    the command line, click refused the whole command ("Path 'album/2.jpg' is not readable.", exit 2)."""
    album = tmp_path / "album"
    album.mkdir()
    photos = [_photo(album / f"{i}.jpg") for i in (1, 2, 3)]
    photos[1].chmod(0)
    for args in ([album], photos):
        result = cli("image", *args, "--model", tiny_model, "--beam-size", "1", "--batch-size", "4")
        assert result.exit_code == 1, result.output
        assert result.stderr.splitlines() == [f"error: {photos[1]}: permission denied"]
        assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [str(photos[0]), str(photos[2])]


def _without_root_overrides() -> None:
    """For a child process (``preexec_fn``): as root, drop CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER
    from the bounding set, so that the program it runs has them in no set at all. ``as_a_user`` drops them
    from this thread's effective set only, and access(2), which click's readable check calls, checks a
    root caller against its permitted set: as_a_user's tests never met click's refusal."""
    if os.geteuid() != 0:
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2, 3):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            os._exit(77)


def test_an_unreadable_file_on_the_command_line_does_not_refuse_the_others(tmp_path, tiny_model) -> None:
    """image 1.jpg 2.jpg 3.jpg and run ok.mp4 locked.mp4 with one of them unreadable: click refused the whole
    command ("Path '2.jpg' is not readable.", exit 2), nothing captioned. Now one error line for it."""
    ok = make_video(tmp_path / "ok.mp4", [("red", 1.0)]).path
    locked = tmp_path / "locked.mp4"
    locked.write_bytes(Path(ok).read_bytes())
    photos = [_photo(tmp_path / f"{i}.jpg") for i in (1, 2, 3)]
    for path in (locked, photos[1]):
        path.chmod(0)
    for args, unreadable, captioned in ((["run", ok, locked], locked, None), (["image", *photos], photos[1], photos)):
        done = subprocess.run(captioner_command(*args, "--model", tiny_model, "--beam-size", "1"), cwd=tmp_path,
                              capture_output=True, text=True, timeout=300, env=subprocess_env(),
                              preexec_fn=_without_root_overrides)
        if done.returncode == 77:
            pytest.skip("root, and the capabilities cannot be dropped here")
        assert done.returncode == 1, done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(f"error: {unreadable}: ") and "permission denied" in errors[0]
        if captioned:
            assert [line.split("\t")[0] for line in done.stdout.splitlines()] == [str(captioned[0]), str(captioned[2])]
    assert (tmp_path / "ok.srt").is_file()


def test_a_photo_opencv_refuses_is_one_error_line_and_the_others_are_captioned(tmp_path, tiny_model,
                                                                              monkeypatch) -> None:
    """A PNG over 2^30 pixels (a 4.7 MB file: OpenCV's limit, checked before decoding) ended captioner image in a
    cv2.error traceback, every photo of the run lost."""
    photos = [_photo(tmp_path / "a.png"), _photo(tmp_path / "huge.png", "green"), _photo(tmp_path / "c.png", "blue")]
    real = cv2.imdecode

    def refuse(data, flags):
        if bytes(data) == photos[1].read_bytes():
            raise cv2.error("OpenCV(5.1.0) loadsave.cpp:80: error: (-215:Assertion failed) pixels <= "
                            "CV_IO_MAX_IMAGE_PIXELS in function 'validateInputImageSize'")
        return real(data, flags)

    monkeypatch.setattr(encoder_mod.cv2, "imdecode", refuse)
    result = cli("image", *photos, "--model", tiny_model, "--beam-size", "1")
    assert result.exit_code == 1
    assert result.stderr == f"error: {photos[1]}: too large to decode (over 2^30 pixels)\n"
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [str(photos[0]), str(photos[2])]


def test_a_photo_deleted_during_a_run_is_a_captioner_error(tmp_path) -> None:
    """A photo removed after the folder was listed ended the run in a FileNotFoundError traceback."""
    with pytest.raises(CaptionerError, match=r"gone\.jpg: no such file or directory$"):
        load_image(str(tmp_path / "gone.jpg"))
    with pytest.raises(CaptionerError, match=r": is a directory$"):
        load_image(str(tmp_path))


def test_a_stderr_that_cannot_be_written_stops_no_photo(tmp_path, tiny_model) -> None:
    """stderr a pipe nobody reads any more (2> >(true) gone, a closed pipe): the first bad photo's error
    line raised BrokenPipeError, the run ended there and the good photos were never captioned."""
    (tmp_path / "bad.jpg").write_bytes(b"")
    good = [_photo(tmp_path / "good1.jpg"), _photo(tmp_path / "good2.jpg", "blue")]
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(captioner_command("image", tmp_path / "bad.jpg", *good, "--model", tiny_model,
                                                "--beam-size", "1"),
                              stdout=subprocess.PIPE, stderr=write, text=True, timeout=300, env=subprocess_env())
    finally:
        os.close(write)
    assert done.returncode == 1
    assert [line.split("\t")[0] for line in done.stdout.splitlines()] == [str(p) for p in good]


# ---------------------------------------------------------------- transparency, as a browser shows it


def _tiff(rgba: np.ndarray, extra_samples: int | None) -> bytes:
    """An uncompressed little-endian RGBA TIFF, one strip; ``extra_samples`` 1 = associated alpha,
    2 = unassociated, None = no ExtraSamples tag."""
    height, width, n = rgba.shape
    pixels = rgba.tobytes()
    entries = [(256, width), (257, height), (258, None), (259, 1), (262, 2), (273, None), (277, n), (278, height),
               (279, len(pixels))] + ([(338, extra_samples)] if extra_samples is not None else [])
    bits_at = 8 + 2 + 12 * len(entries) + 4
    data_at = bits_at + 2 * n
    out = b"II*\x00" + struct.pack("<IH", 8, len(entries))
    for tag, value in entries:
        if tag == 258:
            out += struct.pack("<HHII", tag, 3, n, bits_at)
        elif tag in (273, 279):
            out += struct.pack("<HHII", tag, 4, 1, data_at if tag == 273 else value)
        else:
            out += struct.pack("<HHIHH", tag, 3, 1, value, 0)
    return out + b"\x00\x00\x00\x00" + struct.pack("<" + "H" * n, *[8] * n) + pixels


def _half_transparent() -> tuple[np.ndarray, np.ndarray]:
    rgb = shot_frame("checker", 0, (64, 48))
    alpha = np.full(rgb.shape[:2], 128, np.uint8)
    alpha[:12], alpha[-12:] = 0, 255
    return rgb, alpha


def test_a_half_transparent_tiff_is_shown_over_white(tmp_path) -> None:
    """libtiff hands OpenCV colour already multiplied by alpha (unassociated alpha is multiplied on
    reading, associated alpha is stored so); blended once more, half-transparent areas came out at
    half their brightness (mean 153 for 179 over white)."""
    rgb, alpha = _half_transparent()
    want = _over_white(rgb, alpha)
    premultiplied = (rgb.astype(np.float64) * alpha[..., None] / 255.0 + 0.5).astype(np.uint8)
    for name, stored, extra in (("unassociated.tif", rgb, 2), ("associated.tif", premultiplied, 1),
                                ("unspecified.tif", rgb, None)):  # as cv2.imwrite writes one: straight
        (tmp_path / name).write_bytes(_tiff(np.dstack([stored, alpha]), extra))
        got = load_image(str(tmp_path / name)).astype(np.float64)
        assert np.abs(got - want).max() <= 2, name


def _png(samples: np.ndarray, depth: int, colour_type: int, *chunks: tuple[bytes, bytes]) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    height, width = samples.shape[:2]
    rows = b"".join(b"\x00" + row.astype(">u2" if depth == 16 else np.uint8).tobytes() for row in samples)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0))
            + b"".join(chunk(k, b) for k, b in chunks) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_a_grey_png_with_a_transparent_colour_key_is_shown_over_white(tmp_path) -> None:
    """A grey logo whose background is made transparent by a tRNS key (PIL's save(transparency=0)): OpenCV
    decodes it to one channel, taken for no alpha, and the background came out black (mean 12 for 215)."""
    for depth in (8, 16):
        grey = np.zeros((40, 50), np.uint16)
        grey[10:30, 10:40] = 80 * (257 if depth == 16 else 1)
        path = tmp_path / f"logo{depth}.png"
        path.write_bytes(_png(grey, depth, 0, (b"tRNS", struct.pack(">H", 0))))
        got = load_image(str(path))
        assert (got[0, 0] == 255).all() and (got[20, 20] == 80).all(), depth


def test_a_bmp_with_alpha_is_shown_over_white(tmp_path) -> None:
    """A 32-bit BMP with an alpha mask (BITMAPV5, as cv2.imwrite writes BGRA): all black, transparency left out."""
    bgra = np.zeros((40, 50, 4), np.uint8)
    bgra[10:30, 10:40] = (40, 40, 40, 255)
    assert cv2.imwrite(str(tmp_path / "logo.bmp"), bgra)
    got = load_image(str(tmp_path / "logo.bmp"))
    assert (got[0, 0] == 255).all() and (got[20, 20] == 40).all()


def test_a_32_bit_bmp_without_alpha_stays_as_it_is(tmp_path) -> None:
    """BI_RGB 32-bit BMPs use the fourth byte as padding (zero): not a fully transparent, all-white picture."""
    pixels = np.zeros((4, 4, 4), np.uint8)
    pixels[..., :3] = 200
    body = pixels.tobytes()
    header = b"BM" + struct.pack("<IHHI", 54 + len(body), 0, 0, 54) + struct.pack(
        "<IiiHHIIiiII", 40, 4, 4, 1, 32, 0, len(body), 2835, 2835, 0, 0)
    (tmp_path / "old.bmp").write_bytes(header + body)
    assert (load_image(str(tmp_path / "old.bmp")) == 200).all()


def test_a_photo_without_transparency_is_decoded_once(tmp_path, monkeypatch) -> None:
    """Every PNG, WebP, TIFF and GIF was decoded a second time (IMREAD_UNCHANGED) to look for alpha: a 6000 x
    4000 PNG took 1.04 s for 0.44, both copies held at once. The header says whether there is any."""
    decodes = []
    imdecode = cv2.imdecode

    def counted(data, flags):
        decodes.append(flags)
        return imdecode(data, flags)

    monkeypatch.setattr(encoder_mod.cv2, "imdecode", counted)
    rgb, alpha = _half_transparent()
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    for name in ("p.png", "p.webp", "p.tif", "p.gif", "p.bmp"):
        assert cv2.imwrite(str(tmp_path / name), bgr)
        decodes.clear()
        load_image(str(tmp_path / name))
        assert decodes == [cv2.IMREAD_COLOR], name
    assert cv2.imwrite(str(tmp_path / "a.png"), np.dstack([bgr, alpha]))  # one with alpha: still shown over white
    decodes.clear()
    got = load_image(str(tmp_path / "a.png")).astype(np.float64)
    assert len(decodes) == 2 and np.abs(got - _over_white(rgb, alpha)).max() <= 1


# ---------------------------------------------------------------- native decoders' own messages


def test_decoder_warnings_stay_off_stderr(tmp_path, tiny_model) -> None:
    """libjpeg and libpng write to fd 2 themselves, past OPENCV_LOG_LEVEL: "Corrupt JPEG data: 59 extraneous
    bytes before marker 0xd9", "libpng warning: tEXt: CRC error" (twice), "libpng error: IDAT: ..." before
    the error line, even with -q. Now only the error line; -vv logs what they said."""
    noise = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    jpeg = bytearray(cv2.imencode(".jpg", noise)[1].tobytes())
    jpeg[len(jpeg) // 2:len(jpeg) // 2 + 8] = bytes(8)
    (tmp_path / "corrupt.jpg").write_bytes(jpeg)
    png = cv2.imencode(".png", noise)[1].tobytes()
    text = b"Comment\x00hello"
    bad_crc = struct.pack(">I", len(text)) + b"tEXt" + text + b"\x00\x00\x00\x00"
    (tmp_path / "text.png").write_bytes(png[:33] + bad_crc + png[33:])
    idat = bytearray(png)
    at = idat.find(b"IDAT")
    idat[at + 40:at + 48] = b"\xff" * 8
    (tmp_path / "idat.png").write_bytes(idat)
    names = [tmp_path / n for n in ("corrupt.jpg", "text.png", "idat.png")]
    for flags in ([], ["-q"]):
        done = subprocess.run(captioner_command("image", *names, "--model", tiny_model, "--beam-size", "1", *flags),
                              capture_output=True, text=True, timeout=300, env=subprocess_env())
        assert done.returncode == 1 and len(done.stdout.splitlines()) == 2
        assert done.stderr.splitlines() == [f"error: {names[2]}: not a readable image"]
    done = subprocess.run(captioner_command("image", *names, "--model", tiny_model, "--beam-size", "1", "-vv"),
                          capture_output=True, text=True, timeout=300, env=subprocess_env())
    said = [line for line in done.stderr.splitlines() if line.startswith("debug: decoding ")]
    assert any("Corrupt JPEG data" in line for line in said) and sum("libpng warning" in line for line in said) == 1


# ---------------------------------------------------------------- formats in folders


def test_heic_in_a_folder_gets_its_hint_and_avif_and_jfif_are_captioned(tmp_path, tiny_model) -> None:
    """A folder of iPhone photos (HEIC, AVIF) printed only "no images found"; with a JPG beside them it
    exited 0 and never mentioned them. AVIF (which OpenCV decodes here) and .jfif (a JPEG) were left out."""
    heic = [tmp_path / "IMG_0001.HEIC", tmp_path / "IMG_0002.heic"]
    for path in heic:
        path.write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(16))
    ok, avif = cv2.imencode(".avif", cv2.cvtColor(shot_frame("blue", 0, (64, 48)), cv2.COLOR_RGB2BGR))
    if not ok:
        pytest.skip("this OpenCV writes no AVIF")
    avif.tofile(str(tmp_path / "IMG_0003.avif"))
    jfif = tmp_path / "scan.jfif"
    jfif.write_bytes(cv2.imencode(".jpg", shot_frame("red", 0, (64, 48)))[1].tobytes())
    result = cli("image", tmp_path, "--model", tiny_model, "--beam-size", "1")
    assert result.exit_code == 1
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [str(tmp_path / "IMG_0003.avif"), str(jfif)]
    assert result.stderr.splitlines() == [
        f"error: {p}: not a readable image (HEIC is not supported: convert it to JPEG)" for p in heic]


def test_batch_size_help_says_what_it_does() -> None:
    """--batch-size said "Images encoded at once", but the encoder takes 16 at a time whatever it is."""
    text = " ".join(cli("image", "--help").stdout.split())
    assert "encoded at once" not in text and "the encoder takes them 16 at a time" in text


# ---------------------------------------------------------------- memory


def test_one_photo_too_large_for_memory_is_not_told_to_lower_batch_size(tmp_path, monkeypatch) -> None:
    """A 12000 x 8000 RGBA PNG under ulimit -v was told "image: a smaller --batch-size", which cannot help
    a photo decoded alone."""
    path = _photo(tmp_path / "huge.png")

    def no_memory(data, img):
        raise MemoryError("Unable to allocate 1.07 GiB for an array with shape (8000, 12000, 3)")

    monkeypatch.setattr(encoder_mod, "_over_white", no_memory)
    with pytest.raises(OutOfMemory) as caught:
        load_image(str(path))
    assert str(caught.value).startswith(f"{path}: out of memory") and "--batch-size" not in str(caught.value)
    assert "make the photo smaller" in str(caught.value)


# ---------------------------------------------------------------- arrays from library callers


@pytest.mark.parametrize("image, says", [
    (np.full((64, 48, 3), 0.5, np.float32), "float32 array of shape (64, 48, 3); floats in 0..1 convert with"),
    (np.zeros((64, 48, 4), np.uint8), "uint8 array of shape (64, 48, 4); convert grey or RGBA with cv2.cvtColor"),
    (np.zeros((64, 48), np.uint8), "uint8 array of shape (64, 48); convert grey or RGBA"),
    (np.zeros((0, 0, 3), np.uint8), "an empty uint8 array of shape (0, 0, 3)"),
    # "a int64"; and floats of 0..255 were told to be multiplied by 255 (wrapped into noise)
    (np.zeros((64, 48, 3), np.int64), "got an int64 array of shape (64, 48, 3)"),
    (np.full((64, 48, 3), 200.0), "float64 array of shape (64, 48, 3); floats in 0..255 convert with image.round()"),
    (np.full((64, 48, 3), np.nan), "float64 array of shape (64, 48, 3); floats in 0..1"),  # no NumPy warning printed
])
def test_caption_images_says_what_input_it_takes(captioner, image, says) -> None:
    """Floats in 0..1 were captioned as a nearly black picture without a word; RGBA and grey arrays raised
    "operands could not be broadcast together", an empty one an OpenCV resize assertion."""
    good = shot_frame("red", 0, (64, 48))
    with pytest.raises(ValueError) as caught:
        captioner.caption_images([good, image])
    assert str(caught.value).startswith("image 1: expected an RGB picture as a uint8 array of shape (height, width, 3)")
    assert says in str(caught.value)


def test_overlapping_captures_of_stderr_give_it_back_and_log_what_came(caplog) -> None:
    """Threads decoding at once share fd 2's redirection: the last one out restores it (two captures that each
    saved and restored fd 2 in turn would leave it pointing at a deleted temporary file)."""
    import logging
    import threading

    from captioner.native import native_stderr_captured

    caplog.set_level(logging.DEBUG, logger="captioner.native")
    before = os.fstat(2)
    both_in, both_wrote = threading.Barrier(2), threading.Barrier(2)

    def decode(i: int) -> None:
        with native_stderr_captured(f"decoding {i}.png"):
            both_in.wait()
            os.write(2, f"libpng warning: {i}\n".encode())
            both_wrote.wait()

    threads = [threading.Thread(target=decode, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    said = " ".join(r.getMessage() for r in caplog.records if r.name == "captioner.native")
    assert "libpng warning: 0" in said and "libpng warning: 1" in said


def test_what_stderr_got_so_far_can_be_read_inside_the_capture() -> None:
    """Ray's start-up error quotes what its C++ client wrote to fd 2 (the capture is shared with photo decoding):
    reading it must not move where the next write goes, nor keep fd 2 after the block."""
    from captioner.native import native_stderr_captured

    before = os.fstat(2)
    with native_stderr_captured("Ray said") as captured:
        os.write(2, b"connection refused 1\n")
        assert captured() == "connection refused 1\n"
        os.write(2, b"connection refused 2\n")
        assert captured() == "connection refused 1\nconnection refused 2\n"
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)


def test_a_ctrl_c_just_after_stderr_is_swapped_gives_it_back(monkeypatch) -> None:
    """A KeyboardInterrupt between the swap of fd 2 and the block's try left fd 2 on the deleted temporary file:
    the CLI's "interrupted" line was lost, and in a library every later capture kept the file as "stderr"."""
    from captioner import native

    before, real_dup2, keep = os.fstat(2), os.dup2, os.dup(2)
    calls = []

    def dup2_then_interrupt(fd: int, fd2: int, *args) -> int:
        result = real_dup2(fd, fd2, *args)
        calls.append(fd)
        if len(calls) == 1:  # the swap itself, not the giving back
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(native.os, "dup2", dup2_then_interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            with native.native_stderr_captured("decoding x.png"):
                pass
        after = os.fstat(2)
        assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino) and native._fd2_users == 0
    finally:
        real_dup2(keep, 2)  # whatever happened, this test process keeps its stderr
        os.close(keep)
        native._fd2_users, native._fd2_saved = 0, -1


def test_photos_in_a_folder_that_cannot_be_entered_are_said(tmp_path, tiny_model, as_a_user) -> None:
    """A sub-folder that can be listed but not entered (mode 644): its photos were left out without a word, exit 0
    (batch and search say so)."""
    album = tmp_path / "album"
    (album / "locked").mkdir(parents=True)
    first = _photo(album / "a.jpg")
    _photo(album / "locked" / "b.jpg")
    (album / "locked").chmod(0o644)
    try:
        result = cli("image", album, "--model", tiny_model, "--beam-size", "1")
    finally:
        (album / "locked").chmod(0o755)
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [f"error: {album / 'locked' / 'b.jpg'}: cannot read file (permission denied)"]
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [str(first)]


def test_caption_images_takes_any_iterable_of_images_or_a_stacked_batch_but_not_one_image(captioner) -> None:
    """One image (an array) or a stacked batch gave "The truth value of an array ... is ambiguous", a generator
    "object of type 'generator' has no len()"."""
    red, blue = shot_frame("red", 0, (64, 48)), shot_frame("blue", 0, (64, 48))
    want = [c.text for c in captioner.caption_images([red, blue])]
    assert [c.text for c in captioner.caption_images(np.stack([red, blue]))] == want
    assert [c.text for c in captioner.caption_images(im for im in (red, blue))] == want
    assert captioner.caption_images(iter(())) == []
    with pytest.raises(ValueError, match=r"^caption_images takes a list of images or a \[batch, height, width, 3\] "
                                         r"array, got one uint8 array of shape \(48, 64, 3\); one image: "
                                         r"caption_images\(\[image\]\)$"):
        captioner.caption_images(red)
    with pytest.raises(TypeError, match=r"^caption_images takes a list of images, got int$"):
        captioner.caption_images(3)
    past = captioner.encoder.config.batch_size + 1  # an image of the second batch is counted from the first image
    with pytest.raises(ValueError, match=rf"^image {past}: expected an RGB picture"):
        captioner.caption_images([red] * past + [np.zeros((4, 4), np.uint8)])


# ---------------------------------------------------------------- pictures shown otherwise than stored


def _pillow_avif() -> object:
    """Pillow with AVIF (it writes the rotation and mirror boxes, and reads them as browsers do), or a skip."""
    image = pytest.importorskip("PIL.Image")
    features = pytest.importorskip("PIL.features")
    if not features.check("avif") or not cv2.imencode(".avif", np.zeros((8, 8, 3), np.uint8))[0]:
        pytest.skip("no AVIF in this Pillow or OpenCV")
    return image


def test_an_avif_is_turned_and_mirrored_as_its_boxes_say(tmp_path) -> None:
    """A phone's AVIF stores the picture as taken plus irot/imir boxes, which browsers apply; OpenCV does not,
    and the photo was captioned lying on its side. All eight orientations against Pillow, which reads the boxes."""
    image = _pillow_avif()
    from PIL import ImageOps

    rng = np.random.default_rng(3)
    stored = image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1))
    shown_by = {}
    for orientation in range(1, 9):
        exif = image.Exif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}.avif"
        stored.save(path, exif=exif, quality=100)
        want = np.asarray(ImageOps.exif_transpose(image.open(path)).convert("RGB")).astype(np.float64)
        got = load_image(str(path)).astype(np.float64)
        assert got.shape == want.shape and np.abs(got - want).mean() < 3, orientation
        shown_by[orientation] = got
    assert all(np.abs(shown_by[1] - shown_by[o]).mean() > 20 for o in (2, 3, 4))  # the turns are not alike


def test_transparency_in_bigtiff_mif1_avif_and_an_animated_gif_is_seen_over_white(tmp_path) -> None:
    """Black where transparent: a BigTIFF (its header unknown), an AVIF whose major brand is mif1 (AVIF only
    among the compatible brands), and a GIF whose first frame is transparent but whose next one is opaque
    (OpenCV then decodes without alpha)."""
    image = pytest.importorskip("PIL.Image")
    rgba = np.zeros((24, 32, 4), np.uint8)
    rgba[6:18, 8:24] = (200, 30, 30, 255)  # an opaque red block on a transparent ground
    logo = image.fromarray(rgba, "RGBA")
    logo.save(tmp_path / "big.tif", big_tiff=True)
    opaque = image.new("RGBA", (32, 24), (0, 0, 255, 255))
    logo.save(tmp_path / "anim.gif", save_all=True, append_images=[opaque], duration=500, loop=0, disposal=2)
    names = ["big.tif", "anim.gif"]
    features = pytest.importorskip("PIL.features")
    if features.check("avif"):
        logo.save(tmp_path / "logo.avif", quality=100)
        data = bytearray((tmp_path / "logo.avif").read_bytes())
        assert data[8:12] == b"avif"
        data[8:12] = b"mif1"
        (tmp_path / "mif1.avif").write_bytes(bytes(data))
        names.append("mif1.avif")
    for name in names:
        rgb = load_image(str(tmp_path / name))
        assert (rgb[0, 0] == 255).all() and (rgb[23, 31] == 255).all(), name
        assert np.abs(rgb[12, 16].astype(int) - (200, 30, 30)).max() <= 3, name


def test_files_a_folder_walk_leaves_out_are_said(tmp_path, tiny_model) -> None:
    """Photos named .jpe or .jp2 in a folder were left out without a word (batch counts what it ignores), a FIFO
    named like a photo too (named itself: "not a regular file"), and an empty folder said only "no images
    found"."""
    album = tmp_path / "album"
    album.mkdir()
    first = _photo(album / "a.jpg")
    (album / "b.jpe").write_bytes(first.read_bytes())
    (album / "notes.txt").write_text("x", encoding="utf-8")
    os.mkfifo(album / "pipe.jpg")
    result = cli("image", album, "--model", tiny_model, "--beam-size", "1")
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [
        f"error: {album / 'pipe.jpg'}: not a regular file",
        f"note: 2 files without a photo's extension left out ({album / 'b.jpe'}, {album / 'notes.txt'}); "
        "name a file to caption it"]
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [str(first)]
    assert cli("image", album, "-q", "--model", tiny_model, "--beam-size", "1").stderr.splitlines() == [
        f"error: {album / 'pipe.jpg'}: not a regular file"]
    (tmp_path / "empty").mkdir()
    result = cli("image", tmp_path / "empty", "--model", tiny_model)
    assert result.exit_code == 1 and result.stderr.splitlines() == [f"error: no images found in {tmp_path / 'empty'}"]


def test_a_photo_cut_short_just_before_its_end_marker_is_read_with_a_warning(tmp_path, caplog):
    """A JPEG without its last 2 bytes (EOI) or a PNG without its IEND chunk (a download stopped just short) was
    "not a readable image"; browsers, ffmpeg and cv2.imread show them, and a video cut short is captioned as far as
    it decodes. A PNG cut in its pixel data is still refused."""
    import logging

    rgb = shot_frame("checker", 0, (64, 48))
    for ext in (".jpg", ".png"):
        ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        whole = buf.tobytes()
        (tmp_path / f"cut{ext}").write_bytes(whole[:-2] if ext == ".jpg" else whole[:-12])
        with caplog.at_level(logging.WARNING, logger="captioner"):
            got = load_image(str(tmp_path / f"cut{ext}"))
        assert np.array_equal(got, load_image(_write(tmp_path / f"whole{ext}", whole)))
        assert f"cut{ext}: the file is cut short" in caplog.text
        half = tmp_path / f"half{ext}"
        half.write_bytes(whole[: len(whole) // 2])  # a download stopped half-way: no alt text of a grey picture
        with pytest.raises(CaptionerError, match=f"half{ext}: not a readable image" + (
                r" \(the file is cut short: about \d+ % of the picture is missing\)$" if ext == ".jpg" else "$")):
            load_image(str(half))


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_a_grey_and_alpha_tiff_is_seen_over_white(tmp_path):
    """A grey + alpha TIFF (a logo) came out all black: OpenCV returns its grey alone; the PNG of it was right."""
    pil = pytest.importorskip("PIL.Image")
    la = np.zeros((40, 40, 2), np.uint8)
    la[10:30, 10:30, 1] = 255  # a black square, opaque; the rest transparent
    for ext in (".png", ".tif"):
        pil.fromarray(la, "LA").save(tmp_path / f"logo{ext}")
    png, tif = load_image(str(tmp_path / "logo.png")), load_image(str(tmp_path / "logo.tif"))
    assert tuple(tif[0, 0]) == (255, 255, 255) and np.array_equal(tif, png)


def test_a_failed_photos_line_comes_in_its_place_among_the_captions(tmp_path, tiny_model) -> None:
    """A chunk's error lines were printed before its captions: on a terminal b.jpg's error stood above a.jpg's
    caption (with the default --batch-size 16, ahead of up to 15 captions)."""
    album = tmp_path / "album"
    album.mkdir()
    _photo(album / "a.jpg")
    (album / "b.jpg").write_bytes(b"")
    _photo(album / "c.jpg", "blue")
    (album / "d.jpg").write_bytes(_photo(tmp_path / "whole.jpg", "green").read_bytes()[:-2])  # a warning, in its place
    done = subprocess.run(captioner_command("image", album, "--model", tiny_model, "--beam-size", "1"),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=subprocess_env(), timeout=120)
    assert done.returncode == 1
    assert [line.split("\t")[0] for line in done.stdout.splitlines()] == [
        str(album / "a.jpg"), f"error: {album / 'b.jpg'}: not a readable image", str(album / "c.jpg"),
        f"warning: {album / 'd.jpg'}: the file is cut short (no end marker); captioned as far as it decodes",
        str(album / "d.jpg")], done.stdout


def test_what_an_unreadable_file_is_is_told_by_its_bytes_not_its_name(tmp_path, tiny_model) -> None:
    """A HEIC photo named .jpg got no hint (the hint went by the extension), and a video named .jpg none either."""
    heic = tmp_path / "IMG_0002.jpg"
    heic.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic")
    video = make_video(tmp_path / "clip.mp4", [("red", 1.0)]).path
    named = tmp_path / "frame.jpg"
    named.write_bytes(video.read_bytes())
    for path, hint in ((heic, "HEIC is not supported: convert it to JPEG"),
                       (named, "it is a video: caption it with captioner run")):
        with pytest.raises(CaptionerError, match=f"^{path}: not a readable image \\({hint}\\)$"):
            load_image(str(path))
    # a damaged AVIF (major brand miaf, avif among the compatible ones) and sound alone are no video, no HEIC
    for name, brands in (("pic.avif", b"miaf\x00\x00\x00\x00mif1avif"), ("sound.jpg", b"M4A \x00\x00\x00\x00M4A mp42")):
        (tmp_path / name).write_bytes(len(brands).to_bytes(4, "big") + b"ftyp" + brands + b"\x00" * 40)
        with pytest.raises(CaptionerError, match=f"^{tmp_path / name}: not a readable image$"):
            load_image(str(tmp_path / name))


def test_an_all_nan_picture_is_refused_without_a_numpy_warning() -> None:
    """np.nanmax of an all-NaN float picture warned "All-NaN slice encountered" on stderr (the library never prints)."""
    import warnings

    from captioner.encoder import check_image

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="floats in 0..1"):
            check_image(np.full((4, 4, 3), np.nan))

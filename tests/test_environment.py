"""The machine a run meets: no home folder, read-only or non-UTF-8 cache folders, no torch, no temporary
folder, ``python -OO``. Each case came from installing the wheel on a fresh machine."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import captioner.encoder as encoder_mod
from captioner.config import EncoderConfig
from captioner.encoder import Encoder
from captioner.errors import CaptionerError, ModelError, VideoError

NOT_UTF8 = os.fsdecode(b"cach\xe9")  # a Latin-1 folder name, kept by Python as a lone surrogate


def _identity_model(path: Path) -> None:
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())


def test_onnx_runtime_opens_a_model_under_a_name_that_is_not_utf8(tmp_path):
    """ONNX Runtime refused such a name with a TypeError on every run (then the encoder went to torch)."""
    ort = encoder_mod.onnxruntime_module()
    folder = tmp_path / NOT_UTF8
    folder.mkdir()
    _identity_model(folder / "m.onnx")
    session = ort.InferenceSession(encoder_mod.onnx_source(folder / "m.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": np.array([1, 2], np.float32)})[0].tolist() == [1, 2]
    assert encoder_mod.onnx_source(tmp_path / "plain.onnx") == str(tmp_path / "plain.onnx")  # a name: no read


def test_torch_exports_to_a_name_that_is_not_utf8(tmp_path):
    torch = pytest.importorskip("torch")
    target = tmp_path / NOT_UTF8 / "m.onnx"
    target.parent.mkdir()
    with encoder_mod.onnx_target(target) as f:
        torch.onnx.export(torch.nn.Identity(), (torch.zeros(2),), f, input_names=["x"], output_names=["y"],
                          opset_version=17, dynamo=False)
    ort = encoder_mod.onnxruntime_module()
    session = ort.InferenceSession(encoder_mod.onnx_source(target), providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": np.array([3, 4], np.float32)})[0].tolist() == [3, 4]


def test_no_home_folder_is_no_cache_in_a_folder_named_tilde(monkeypatch, tmp_path):
    """HOME unset and a user id without a passwd entry: expanduser('~') is '~', and the encoder's
    18 MB export went to ./~/.cache/captioner in every folder a run started in."""
    from captioner.outputs import cache_dir

    monkeypatch.delenv("CAPTIONER_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(os.path, "expanduser", lambda p: p)
    with pytest.raises(CaptionerError, match="no home folder.*set CAPTIONER_CACHE or XDG_CACHE_HOME"):
        cache_dir()
    monkeypatch.setenv("CAPTIONER_CACHE", str(tmp_path))  # either variable is the way out
    assert cache_dir() == tmp_path
    monkeypatch.delenv("CAPTIONER_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "captioner"


def _failing_onnx(exc: Exception):
    def fail(encoder, config):
        raise exc
    return fail


def test_without_torch_an_onnx_runtime_that_cannot_be_imported_is_named(monkeypatch):
    """It said 'the encoder's ONNX copy is not made yet ... needs torch' beside a cached export."""
    missing = ModuleNotFoundError("No module named 'onnxruntime'", name="onnxruntime")
    monkeypatch.setattr(encoder_mod, "_onnx_session", _failing_onnx(missing))
    monkeypatch.setattr(encoder_mod, "_torch_importable", lambda: False)
    with pytest.raises(ModelError) as info:
        Encoder(EncoderConfig())
    assert str(info.value) == ("ONNX Runtime cannot be imported (ModuleNotFoundError: No module named 'onnxruntime'), "
                               "and torch, which would encode instead, is not installed")


def test_without_torch_any_onnx_trouble_is_one_error_not_a_traceback(monkeypatch):
    """Anything but an ImportError went on to torch_model(): 'No module named torch', a traceback."""
    monkeypatch.setattr(encoder_mod, "_onnx_session", _failing_onnx(OSError(errno.EROFS, "Read-only file system")))
    monkeypatch.setattr(encoder_mod, "_torch_importable", lambda: False)
    monkeypatch.setattr(Encoder, "torch_model", lambda self: pytest.fail("torch is not there to build"))
    with pytest.raises(ModelError, match=r"^ONNX Runtime is unavailable \(OSError: .*Read-only file system\), and "
                                         r"torch, which would encode instead, is not installed$"):
        Encoder(EncoderConfig())


def test_int8_copy_on_a_read_only_cache_falls_back_to_float32(monkeypatch, tmp_path, caplog):
    """Removing a copy that is not there raises EROFS on a read-only file system: the run went to torch."""
    if encoder_mod.int8_ranges_path("efficientnet-lite0") is None:
        pytest.skip("no shipped int8 ranges")
    monkeypatch.setenv("CAPTIONER_CACHE", str(tmp_path))
    Encoder(EncoderConfig(), backend="onnx")  # the float export, made while the cache could be written

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(encoder_mod, "_quantize", refuse)
    monkeypatch.setattr(Path, "unlink", refuse)
    with caplog.at_level(logging.WARNING, logger="captioner"):
        enc = Encoder(EncoderConfig(int8=True), backend="onnx")
    assert (enc.backend, enc.precision) == ("onnx", "float32")
    assert "int8 encoder unavailable (OSError: [Errno 30] Read-only file system); using float32" in caplog.text
    assert "encoding with torch" not in caplog.text


def test_no_temporary_folder_for_a_name_that_is_not_utf8_is_that_video_s_error(monkeypatch, tmp_path):
    """tempfile's FileNotFoundError ('No usable temporary directory') ended run with a traceback."""
    from captioner import video as video_mod

    def no_temp(*args, **kwargs):
        raise FileNotFoundError(errno.ENOENT, "No usable temporary directory found in ['/tmp']")

    monkeypatch.setattr(video_mod.tempfile, "TemporaryDirectory", no_temp)
    path = tmp_path / os.fsdecode(b"caf\xe9.mp4")
    with pytest.raises(VideoError, match=r"not valid UTF-8 and no link to it could be made \(No usable temporary "
                                         r"directory.*\); rename the file"):
        with video_mod._opencv_name(path):
            pass


def test_a_read_only_folder_with_a_name_that_is_not_utf8_has_its_index_in_the_cache(monkeypatch, tmp_path):
    from captioner import find

    monkeypatch.setenv("CAPTIONER_CACHE", str(tmp_path / "cache"))
    root = tmp_path / NOT_UTF8
    root.mkdir()
    monkeypatch.setattr(find, "_may", lambda path, mode: False)  # read-only (the tests may run as root)
    path = find.index_path(root)
    assert path.is_relative_to(tmp_path / "cache" / "search") and path != find.index_path(tmp_path)


def test_help_survives_python_OO():
    """Click takes a command's help from its docstring, which -OO strips: --help lost its description."""
    done = subprocess.run([sys.executable, "-OO", "-m", "captioner", "run", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Files captioner wrote before are replaced" in done.stdout


def test_info_says_the_versions_and_an_onnx_runtime_it_cannot_import(monkeypatch):
    from clitools import cli

    from captioner import __version__

    result = cli("info")
    assert result.exit_code == 0, result.stderr
    (versions,) = [line for line in result.stdout.splitlines() if line.startswith("versions:")]
    assert f"captioner {__version__}, Python " in versions and "onnxruntime " in versions and "numpy " in versions

    def broken():
        raise ImportError("DLL load failed")

    monkeypatch.setattr(encoder_mod, "onnxruntime_module", broken)
    line = encoder_mod.runtime_summary("efficientnet-lite0")
    assert line == ("NumPy decoder; encoder on torch, slower: ONNX Runtime cannot be imported "
                    "(ImportError: DLL load failed)")
    monkeypatch.setattr(encoder_mod, "_torch_importable", lambda: False)  # and no torch: nothing encodes
    assert encoder_mod.runtime_summary("efficientnet-lite0") == (
        "no encoder: ONNX Runtime cannot be imported (ImportError: DLL load failed), and torch, which would encode "
        "instead, is not installed")

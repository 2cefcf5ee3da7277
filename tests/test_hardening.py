"""Issue #14, a new user's trial: stopping a batch, output folders, reports, ``info`` checks.

Real processes where only a real process shows the defect (signals, orphaned workers).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from captioner.batch import local as local_engine
from captioner.cli import main
from captioner.outputs import REPORT_NAME
from clitools import REPO, captioner_command, files_under, isolate_cli, subprocess_env  # noqa: F401
from conftest import sigint_default_in_child
from videos import make_video

pytestmark = pytest.mark.usefixtures("isolate_cli")


def _children(pid: int) -> set[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    kids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.add(int(entry))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its parent's bookkeeping is left


def _wait_gone(pids: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = {p for p in pids if _alive(p)}
        if not alive:
            return alive
        time.sleep(0.1)
    return {p for p in pids if _alive(p)}


def _start_batch(tmp_path: Path, model: Path, session: bool = False) -> tuple[subprocess.Popen, Path, set[int]]:
    """A two-worker batch of videos long enough to be stopped mid-way; returns once workers captioned one.
    ``session``: in a session of its own, as a terminal's (a signal to its process group reaches every process)."""
    tree = tmp_path / "in"
    for i in range(8):
        make_video(tree / f"v{i}.mp4", [(["red", "blue", "checker", "green"][i % 4], 8.0)], seed=i)
    out = tmp_path / "out"
    proc = subprocess.Popen(captioner_command("batch", tree, "-o", out, "--model", model, "--workers", "2",
                                              "--threads", "1", "--fps", "4", "-q"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=subprocess_env(), cwd=REPO, start_new_session=session)
    deadline = time.monotonic() + 120
    while not list(out.glob("*.srt")):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "no output within 120 s"
        time.sleep(0.05)
    workers = _children(proc.pid)
    assert len(workers) >= 2, workers  # the two workers (and the pool's resource tracker)
    return proc, out, workers


def _signalled(proc: subprocess.Popen, sig: int) -> tuple[int, str]:
    """Send ``sig`` to a running batch; its exit status and stderr."""
    try:
        proc.send_signal(sig)
        return proc.wait(timeout=30), proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigterm_stops_a_batch_like_ctrl_c(tmp_path, tiny_model):
    """SIGTERM: one line, exit 143, the report written (pending marked), every worker gone within 5 s."""
    proc, out, workers = _start_batch(tmp_path, tiny_model)
    assert _signalled(proc, signal.SIGTERM) == (143, "terminated\n")
    assert _wait_gone(workers, 5.0) == set()
    report = json.loads((out / REPORT_NAME).read_text())
    statuses = {Path(v["path"]).name: v["status"] for v in report["videos"]}
    assert len(statuses) == 8 and set(statuses.values()) <= {"ok", "pending"}, statuses
    assert report["totals"]["pending"] >= 1, statuses
    for name, status in statuses.items():  # "ok" exactly when the files are there
        assert (out / name.replace(".mp4", ".srt")).exists() == (status == "ok"), name
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_a_hangup_stops_a_batch_like_sigterm(tmp_path, tiny_model):
    """SIGHUP (a closed terminal, a dropped ssh session) killed a batch on the spot: exit 129 with no report and
    its running marker left. Now as SIGTERM: one line, the report written, the workers gone."""
    # the batch inherits this process's disposition: under nohup (CI) SIGHUP is ignored, and stays so
    inherited = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        proc, out, workers = _start_batch(tmp_path, tiny_model)
    finally:
        signal.signal(signal.SIGHUP, inherited)
    assert _signalled(proc, signal.SIGHUP) == (129, "hung up\n")
    assert _wait_gone(workers, 5.0) == set()
    report = json.loads((out / REPORT_NAME).read_text())
    assert report["totals"]["pending"] >= 1 and not list(out.glob(".captioner-batch-running*"))


def test_a_closed_terminal_hangs_up_the_whole_batch_with_one_line(tmp_path, tiny_model):
    """A closed terminal sends SIGHUP to every process of its group: it killed the pool's resource tracker, and
    the shutdown's new tracker printed a warning and five KeyError tracebacks after "hung up"."""
    inherited = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        proc, out, workers = _start_batch(tmp_path, tiny_model, session=True)
    finally:
        signal.signal(signal.SIGHUP, inherited)
    try:
        os.killpg(proc.pid, signal.SIGHUP)
        assert (proc.wait(timeout=30), proc.stderr.read()) == (129, "hung up\n")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _wait_gone(workers, 5.0) == set()


def test_workers_exit_when_the_batch_is_killed(tmp_path, tiny_model):
    """kill -9 of the batch process: its workers notice and exit within 5 s (no orphans)."""
    proc, out, workers = _start_batch(tmp_path, tiny_model)
    proc.kill()
    proc.wait()
    proc.stderr.close()
    assert _wait_gone(workers, 5.0) == set()


def test_batch_checks_the_output_folder_first(tmp_path, tiny_model, monkeypatch):
    """A folder that cannot be created fails at once: one line, no video captioned."""
    tree = tmp_path / "in"
    make_video(tree / "a.mp4", [("red", 1.0)])
    make_video(tree / "b.mp4", [("blue", 1.0)])
    (tmp_path / "afile").write_text("x")
    calls = []
    monkeypatch.setattr(local_engine, "run_job", lambda *a: calls.append(a))
    result = CliRunner().invoke(main, ["batch", str(tree), "-o", str(tmp_path / "afile" / "subs"),
                                       "--model", str(tiny_model)])
    assert result.exit_code == 1
    assert result.stderr == f"error: {tmp_path / 'afile' / 'subs'}: cannot create output folder (Not a directory)\n"
    assert calls == []


def test_run_leaves_no_empty_output_folder(tmp_path, tiny_model):
    """A run whose only video fails does not leave the output folder it made behind."""
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    result = CliRunner().invoke(main, ["run", str(bad), "-o", str(tmp_path / "new" / "subs"),
                                       "--model", str(tiny_model)])
    assert result.exit_code == 1
    assert not (tmp_path / "new").exists()


def test_run_stopped_before_writing_leaves_no_empty_output_folder(tmp_path, tiny_model, monkeypatch):
    """Ctrl-C while the first video was being captioned left the -o folder it had made, empty."""
    import captioner.batch.job as job

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(job, "caption_one", interrupted)
    video = make_video(tmp_path / "v.mp4", [("red", 1.0)]).path
    result = CliRunner().invoke(main, ["run", str(video), "-o", str(tmp_path / "new" / "subs"), "--model", str(tiny_model)])
    assert result.exit_code == 130 and "interrupted" in result.stderr
    assert not (tmp_path / "new").exists()


def test_interrupted_batch_reports_finished_videos_as_ok(tmp_path, tiny_model, monkeypatch):
    """Ctrl-C after a video's files are written but before its result is back: the report says ok."""
    tree = tmp_path / "in"
    for name, look in (("a.mp4", "red"), ("b.mp4", "blue"), ("c.mp4", "green")):
        make_video(tree / name, [(look, 1.0)])
    real = local_engine.run_job

    def stop_after_second(captioner, job, config):
        result = real(captioner, job, config)
        if job.video.name == "b.mp4":
            raise KeyboardInterrupt  # the files of b are written; its result never arrives
        return result

    monkeypatch.setattr(local_engine, "run_job", stop_after_second)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["batch", str(tree), "-o", str(out), "--model", str(tiny_model), "-q"])
    assert result.exit_code == 130
    report = json.loads((out / REPORT_NAME).read_text())
    statuses = {Path(v["path"]).name: v["status"] for v in report["videos"]}
    assert statuses == {"a.mp4": "ok", "b.mp4": "ok", "c.mp4": "pending"}
    assert files_under(out) == ["a.srt", "b.srt", REPORT_NAME]


@pytest.mark.parametrize("cut", [None, 0.5])
def test_fast_mode_ends_where_the_stream_ends(tmp_path, tiny_model, cut):
    """--fast: no cue, and no JSON duration, past what the file holds (intact or cut in half)."""
    pytest.importorskip("av")
    clip = make_video(tmp_path / "full.avi", [("red", 2.0), ("checker", 2.0)], fps=10).path
    if cut:
        data = clip.read_bytes()
        clip = tmp_path / "cut.avi"
        clip.write_bytes(data[: int(len(data) * cut)])
    durations = {}
    for mode in ("normal", "fast"):
        out = tmp_path / mode
        result = CliRunner().invoke(main, ["run", str(clip), "-o", str(out), "-f", "json", "--model", str(tiny_model),
                                           "-q", *(["--fast"] if mode == "fast" else [])])
        assert result.exit_code == 0, result.output
        doc = json.loads((out / (clip.stem + ".json")).read_text())
        durations[mode] = doc["metadata"]["video"]["duration"]
        assert doc["cues"] and doc["cues"][-1]["end"] <= durations[mode]
    assert durations["fast"] == pytest.approx(durations["normal"], abs=0.15)
    if cut:
        assert durations["fast"] < 3.0  # the header still announces 4 s


def test_info_checks_the_decoder_checksum(tmp_path, tiny_model):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    tensors = model / "decoder.safetensors"
    data = bytearray(tensors.read_bytes())
    data[-10] ^= 0xFF
    tensors.write_bytes(bytes(data))
    result = CliRunner().invoke(main, ["info", "--model", str(model)])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith(f"error: {tensors}: checksum mismatch") and result.stderr.count("\n") == 1


def test_a_model_naming_an_unknown_encoder_is_refused_by_every_command(tmp_path, tiny_model):
    """info showed such a model ('runtime: unavailable', exit 0) and run, batch and image said "unknown encoder
    'efficientnet-lite9'; choose one of [...]": no file named, and nothing a user could choose."""
    import json
    import shutil

    import cv2
    import numpy as np

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    manifest = json.loads((model / "model.json").read_text())
    (model / "model.json").write_text(json.dumps({**manifest, "encoder": "efficientnet-lite9"}))
    line = (f"error: {model / 'model.json'}: encoder 'efficientnet-lite9' is not one captioner can run "
            "(efficientnet-lite0, efficientnet-lite1, efficientnet-lite2)\n")
    photo = tmp_path / "a.png"
    assert cv2.imwrite(str(photo), np.zeros((8, 8, 3), np.uint8))
    clip = make_video(tmp_path / "in" / "a.mp4", [("red", 1.0)]).path
    for args in (["info"], ["image", str(photo)], ["run", str(clip), "-o", str(tmp_path / "o")]):
        result = CliRunner().invoke(main, [*args, "--model", str(model)])
        assert (result.exit_code, result.stdout, result.stderr) == (1, "", line), args


def test_run_shows_one_progress_bar_per_video(monkeypatch):
    """Windows alternate frames and segments: the bar is made once, never goes back, and knows its total (ETA)."""
    import tqdm

    from captioner.cli import _ProgressBar
    from captioner.pipeline import Progress

    made = []

    class Recorder:
        def __init__(self, **kwargs):
            made.append(self)
            self.total, self.n, self.seen = kwargs.get("total"), 0, []

        def update(self, k):
            self.n += k
            self.seen.append(self.n)

        def set_postfix_str(self, text, refresh=True):
            self.postfix = text

        def close(self):
            pass

    monkeypatch.setattr(tqdm, "tqdm", Recorder)
    bar = _ProgressBar("clip.mp4")
    for event in [Progress("frames", 16, 100), Progress("frames", 32, 100), Progress("segments", 3, 0),
                  Progress("frames", 48, 100), Progress("segments", 5, 0), Progress("frames", 100, 100),
                  Progress("segments", 9, 9)]:
        bar(event)
    bar.close()
    assert len(made) == 1
    assert made[0].total == 100 and made[0].seen == [16, 32, 48, 100]
    assert made[0].postfix == "9 segments captioned"


def _free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_ray_cluster_joined_by_address(tmp_path, tiny_model):
    """A real head from `ray start` (token authentication on, as current Ray does by default), joined by
    address: with the cluster's token in RAY_AUTH_TOKEN the batch runs there; without it, one line says what to do."""
    pytest.importorskip("ray", reason="the Ray extra is not installed (pip install 'ray>=2.9')")
    import secrets
    import shutil
    import sys
    import tempfile

    ray_cli = Path(sys.executable).with_name("ray")
    if not ray_cli.exists():
        pytest.skip("no `ray` command beside this Python")
    tree = tmp_path / "in"
    make_video(tree / "x.mp4", [("red", 1.0), ("checker", 1.0)])
    make_video(tree / "deep" / "y.avi", [("blue", 2.0)], seed=1)
    token = secrets.token_hex(16)
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    port, *others = _free_ports(5)
    env = {**subprocess_env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen([str(ray_cli), "start", "--head", "--block", "--port", str(port), "--node-ip-address",
                             "127.0.0.1", "--num-cpus", "2", "--include-dashboard", "false", "--temp-dir", temp,
                             *[a for flag, p in zip(["--dashboard-agent-listen-port",
                                                     "--dashboard-agent-grpc-port", "--metrics-export-port",
                                                     "--runtime-env-agent-port"], others) for a in (flag, str(p))]],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        seen = []
        for line in head.stdout:  # ends if the head exits
            seen.append(line)
            if "Ray runtime started" in line:
                break
        assert any("Ray runtime started" in line for line in seen), "".join(seen)
        client = {k: v for k, v in subprocess_env().items() if not k.startswith("RAY_")}
        client["HOME"] = str(tmp_path)  # no ~/.ray/auth_token of this machine's
        args = ["batch", tree, "-o", tmp_path / "ray", "--engine", "ray", "--ray-address", f"127.0.0.1:{port}",
                "--workers", "2", "--model", tiny_model, "-f", "srt,vtt,json,txt", "--threads", "1", "-q"]
        joined = subprocess.run(captioner_command(*args), env={**client, "RAY_AUTH_TOKEN": token}, cwd=REPO,
                                capture_output=True, text=True, timeout=240)
        assert joined.returncode == 0 and joined.stderr == "", joined.stderr
        report = json.loads((tmp_path / "ray" / REPORT_NAME).read_text())
        assert report["engine"] == "ray" and report["totals"]["ok"] == 2
        local = CliRunner().invoke(main, ["batch", str(tree), "-o", str(tmp_path / "local"), "--model", str(tiny_model),
                                          "-f", "srt,vtt,json,txt", "--threads", "1", "-q"])
        assert local.exit_code == 0
        names = [n for n in files_under(tmp_path / "local") if n != REPORT_NAME]
        assert len(names) == 8 and names == [n for n in files_under(tmp_path / "ray") if n != REPORT_NAME]
        for name in names:
            assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    finally:  # the head, its raylet, GCS and workers share the session `ray start` was given
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=3)
        except subprocess.TimeoutExpired:  # a graceful `ray start --block` takes long; this cluster is throwaway
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def test_a_cluster_that_wants_a_token_is_one_line(tmp_path, tiny_model, monkeypatch):
    """What Ray does without the token (20 s of C++ log lines on fd 2, then ConnectionError) becomes one line."""
    ray = pytest.importorskip("ray")
    tree = tmp_path / "in"
    make_video(tree / "x.mp4", [("red", 1.0)])

    def refused(**kwargs):
        os.write(2, b"[2026-12-02 17:56:20,834 W 1 1] gcs_client.cc:210: Failed to get cluster ID from GCS server: "
                    b"Unauthenticated: RPC error: InvalidAuthToken: Authentication token is missing or incorrect\n")
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.9:6379")

    monkeypatch.setattr(ray, "init", refused)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr("captioner.batch.ray._unreachable", lambda address: None)  # as if a head answered there
    err = tmp_path / "fd2"
    saved = os.dup(2)
    with open(err, "wb") as fh:
        os.dup2(fh.fileno(), 2)
        try:
            out = CliRunner().invoke(main, ["batch", str(tree), "-o", str(tmp_path / "o"), "--engine", "ray",
                                            "--ray-address", "10.0.0.9:6379", "--model", str(tiny_model), "-q"])
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    assert out.exit_code == 1
    assert out.stderr == ("error: cannot join the Ray cluster at 10.0.0.9:6379: it requires its authentication token; "
                          "set RAY_AUTH_TOKEN to the token that `ray get-auth-token` prints on the head node (or run "
                          "the batch on a node of the cluster with --ray-address auto)\n")
    assert err.read_bytes() == b""


def test_ctrl_c_while_ray_starts_waits_for_it_then_shuts_it_down(tmp_path, tiny_model, monkeypatch):
    """Ctrl-C inside ray.init's first seconds: the GCS, raylet and agents it had started outlived the CLI
    by a minute. The interrupt is held until ray.init returns, then Ray is shut down and the batch stops."""
    import signal

    ray = pytest.importorskip("ray")
    from captioner.batch.job import BatchJob
    from captioner.batch.ray import run_ray
    from captioner.config import CaptionConfig

    calls = []

    def starting(**kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C, while Ray starts
        time.sleep(0.05)
        calls.append("init returned")

    monkeypatch.setattr(ray, "init", starting)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append("shutdown"))
    job = BatchJob(tmp_path / "x.mp4", tmp_path / "x", "x.mp4", 0)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (CI may start us ignoring it)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_ray([job], CaptionConfig(model_dir=tiny_model))
        assert calls == ["init returned", "shutdown"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back
    finally:
        signal.signal(signal.SIGINT, before)


def test_no_telemetry_files(tmp_path, tiny_model):
    """ONNX Runtime writes ~/.cache/Microsoft/DeveloperTools/.onnxruntime/{deviceid,onnxruntime.db} unless told not to."""
    from captioner.encoder import onnx_cache_dir

    clip = make_video(tmp_path / "v.mp4", [("red", 1.0)]).path
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in subprocess_env().items() if k not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), CAPTIONER_CACHE=str(onnx_cache_dir()))  # the encoder export that exists already
    done = subprocess.run(captioner_command("run", clip, "--model", tiny_model, "-q"), env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "v.srt").exists()
    assert files_under(home) == []


# ---------------------------------------------------------------- model folders and options (a bug hunt's findings)


def _vse_model(tmp_path: Path, tiny_model: Path) -> Path:
    """A copy of the tiny model with a search map (vse.safetensors), as the shipped model has."""
    import shutil

    import numpy as np

    from captioner.vse import SegmentEmbedder, save_vse
    from captioner.weights import MANIFEST

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    manifest = json.loads((model / MANIFEST).read_text())
    rng = np.random.default_rng(0)
    d_in = manifest["decoder"]["feature_dim"]
    manifest["vse"] = save_vse(model, SegmentEmbedder(
        np.zeros(d_in, np.float32), np.ones(d_in, np.float32), rng.standard_normal((d_in, 8)).astype(np.float32),
        np.zeros(8, np.float32), rng.standard_normal((8, 384)).astype(np.float32), np.zeros(384, np.float32)))
    (model / MANIFEST).write_text(json.dumps(manifest))
    return model


def test_a_damaged_part_whose_checksum_was_updated_is_one_line(tmp_path, tiny_model):
    """A truncated vse.safetensors listed with its own checksum ended in a safetensors traceback;
    info said nothing was wrong (it checked the decoder only)."""
    import hashlib

    from captioner.weights import MANIFEST

    model = _vse_model(tmp_path, tiny_model)
    assert CliRunner().invoke(main, ["info", "--model", str(model)]).exit_code == 0
    part = model / "vse.safetensors"
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    manifest = json.loads((model / MANIFEST).read_text())
    manifest["vse"]["sha256"] = hashlib.sha256(part.read_bytes()).hexdigest()
    (model / MANIFEST).write_text(json.dumps(manifest))
    image = tmp_path / "x.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(image), np.full((32, 32, 3), 90, np.uint8))
    for args in (["image", str(image)], ["info"]):
        result = CliRunner().invoke(main, [*args, "--model", str(model)])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert result.stderr == f"error: {part}: not a valid safetensors file (" + result.stderr.split(" (", 1)[1]
        assert result.stderr.count("\n") == 1
    part.unlink()
    result = CliRunner().invoke(main, ["info", "--model", str(model)])
    assert result.exit_code == 1 and result.stderr == f"error: {part}: missing (model.json lists it)\n"


@pytest.mark.parametrize("key, value, says", [
    ("vse", "x", '"vse" should be a JSON object'), ("encoder", ["x"], '"encoder" should be a JSON string'),
    ("decoder", None, '"decoder" should be a JSON object'), ("extra", "x", '"extra" should be a JSON object'),
    ("vocab", [1, 2], '"vocab" should be a list of words')])
def test_model_json_of_the_wrong_types_is_one_line(tmp_path, tiny_model, key, value, says):
    """Each of these edits ended in a traceback (AttributeError, TypeError: unhashable, ...) in run, image or info."""
    import shutil

    from captioner.weights import MANIFEST

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    manifest = json.loads((model / MANIFEST).read_text())
    manifest[key] = value
    (model / MANIFEST).write_text(json.dumps(manifest))
    for args in (["info"], ["image", str(model / MANIFEST)]):
        result = CliRunner().invoke(main, [*args, "--model", str(model)])
        assert result.exit_code == 1 and result.stderr == f"error: {model / MANIFEST}: {says}\n", result.output
    (model / MANIFEST).write_text('{"format": ' + "[" * 100_000 + "]" * 100_000 + "}")
    result = CliRunner().invoke(main, ["info", "--model", str(model)])
    assert result.stderr == f"error: {model / MANIFEST}: unreadable model manifest (JSON nested too deep)\n"
    # an integer of over 4,300 digits: Python's int() limit, a ValueError that json.JSONDecodeError did not catch
    (model / MANIFEST).write_text('{"format": ' + "1" * 5000 + "}")
    for args in (["info"], ["image", str(model / MANIFEST)]):
        result = CliRunner().invoke(main, [*args, "--model", str(model)])
        assert result.exit_code == 1, result.output
        assert result.stderr == (f"error: {model / MANIFEST}: unreadable model manifest "
                                 "(a JSON number of over 4,300 digits)\n")


@pytest.mark.parametrize("option", [["--fps", "nan"], ["--max-segment", "inf"], ["--min-duration", "nan"],
                                    ["--min-confidence", "nan"], ["--rerank-weight", "nan"]])
def test_nan_and_inf_are_refused_as_option_values(tmp_path, tiny_model, option):
    """click's FloatRange lets nan through (every comparison with it is false): --fps nan ended in a traceback."""
    video = make_video(tmp_path / "v.mp4", [("red", 1.0)]).path
    result = CliRunner().invoke(main, ["run", str(video), "-o", str(tmp_path / "out"), "--model", str(tiny_model),
                                       *option])
    assert result.exit_code == 2 and "is not a finite number" in result.output
    assert not (tmp_path / "out").exists()


def test_a_relative_xdg_cache_home_is_ignored(monkeypatch, tmp_path):
    """The XDG spec: a relative XDG_CACHE_HOME is invalid; used as is, every working folder got its own 19 MB export."""
    from captioner.outputs import cache_dir

    monkeypatch.delenv("CAPTIONER_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", "relcache")
    assert cache_dir() == tmp_path / ".cache" / "captioner"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "abs"))
    assert cache_dir() == tmp_path / "abs" / "captioner"


def test_a_file_written_by_another_library_gets_the_outputs_mode(tmp_path):
    """atomic_path (the encoder's ONNX export) kept mkstemp's 0600: a shared cache's export was private."""
    from captioner.outputs import atomic_path, new_file_mode

    with atomic_path(tmp_path / "e.onnx") as tmp:
        tmp.write_bytes(b"x")
    assert (tmp_path / "e.onnx").stat().st_mode & 0o777 == new_file_mode() & 0o777


def test_an_encoder_cache_that_cannot_be_written_is_a_warning(tmp_path, monkeypatch, caplog):
    """The run fell back to torch (3x slower encoding, every run) and said so only with -v."""
    import logging

    from captioner.encoder import Encoder

    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("CAPTIONER_CACHE", str(tmp_path / "file"))
    with caplog.at_level(logging.WARNING, logger="captioner.encoder"):
        enc = Encoder()
    assert enc.backend == "torch"
    assert any(r.levelno == logging.WARNING and "encoding with torch, slower" in r.getMessage() for r in caplog.records)


def test_a_ray_address_where_nothing_listens_is_one_line_at_once(tmp_path, tiny_model):
    """Nothing listening at --ray-address: ray.init retried for minutes with its messages caught and Ctrl-C
    held, so a mistyped address or a head node that is down hung the batch without a word."""
    import socket

    pytest.importorskip("ray")
    tree = tmp_path / "in"
    make_video(tree / "x.mp4", [("red", 1.0)])
    with socket.socket() as probe:  # a port nothing listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        started = time.monotonic()
        out = CliRunner().invoke(main, ["batch", str(tree), "-o", str(tmp_path / "o"), "--engine", "ray",
                                        "--ray-address", f"127.0.0.1:{port}", "--model", str(tiny_model), "-q"])
    assert out.exit_code == 1 and time.monotonic() - started < 30
    assert out.stderr == (f"error: cannot reach a Ray head at 127.0.0.1:{port} (connection refused): is it running "
                          "(ray start --head) and the address right?\n")



def test_a_terminal_gone_under_a_job_that_ignores_the_hang_up(tmp_path, tiny_model):
    """nohup or a disowned job: SIGHUP ignored, the terminal closed. batch's summary line met EIO and the batch,
    every video captioned and reported, exited 1 with a traceback; image's result line likewise (its output is
    lost: exit 1, but as one line, as a full disk is said)."""
    import pty
    import sys

    tree = tmp_path / "in"
    make_video(tree / "x.mp4", [("red", 1.0)])

    def on_a_gone_terminal(*args) -> int:
        master, slave = pty.openpty()
        os.close(master)  # gone before anything is written
        child = subprocess.Popen(captioner_command(*args), stdin=slave, stdout=slave, stderr=slave, env=subprocess_env(),
                                 cwd=REPO, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
        os.close(slave)
        return child.wait(timeout=300)

    assert on_a_gone_terminal("batch", tree, "-o", tmp_path / "o", "--model", tiny_model) == 0
    assert json.loads((tmp_path / "o" / REPORT_NAME).read_text(encoding="utf-8"))["totals"]["ok"] == 1
    photo = tmp_path / "p.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(photo), np.full((48, 64, 3), 200, np.uint8))
    done = subprocess.run([sys.executable, "-c", "import errno, sys, click\n"
                           "from captioner.cli import main\n"
                           "def echo(message=None, file=None, nl=True, err=False, color=None):\n"
                           "    if not err: raise OSError(errno.EIO, 'Input/output error')\n"
                           "    sys.stderr.write(str(message) + '\\n')\n"
                           "click.echo = echo\n"
                           "main(['image', sys.argv[1], '--model', sys.argv[2]])\n", str(photo), str(tiny_model)],
                          capture_output=True, text=True, env=subprocess_env(), cwd=REPO, timeout=300)
    assert (done.returncode, done.stderr) == (1, "error: cannot write the output: Input/output error\n")


def test_a_second_ctrl_c_after_the_interrupted_line_is_not_a_traceback():
    """Between the command's end and the process's, Ctrl-C went to the handler for one during start-up, which
    raised where it landed (a weakref callback: 'Exception ignored in ... _EarlyInterrupt' and a traceback)."""
    from captioner import cli as cli_mod

    cli_mod._INTERRUPTED[:] = [KeyboardInterrupt]
    try:
        assert cli_mod._interrupted_early(signal.SIGINT, None) is None
    finally:
        cli_mod._INTERRUPTED.clear()
    with pytest.raises(cli_mod._EarlyInterrupt):
        cli_mod._interrupted_early(signal.SIGINT, None)


def test_console_leaves_a_caller_that_keeps_control_its_ctrl_c():
    """console() ignored Ctrl-C on the way out (the process's exit, waiting for the loader thread, made a
    traceback of a second one) for any caller: a notebook calling it could no longer be stopped."""
    import sys

    done = subprocess.run([sys.executable, "-c", "import signal, captioner\n"
                           "captioner.console(args=['--version'], standalone_mode=False)\n"
                           "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)\n"
                           "try:\n    captioner.console(args=['--version'])\n"
                           "except SystemExit:\n    print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)\n"],
                          capture_output=True, text=True, env=subprocess_env(), cwd=REPO, timeout=120,
                          preexec_fn=sigint_default_in_child)
    assert done.stdout.splitlines()[1::2] == ["True", "True"], done.stderr


def _linked_weights(folder: Path) -> Path:
    """The shipped model's files hard-linked (or copied) into ``folder``, model.json a copy to edit."""
    import shutil

    folder.mkdir()
    for part in (REPO / "weights").iterdir():
        if part.name == "model.json" or part.is_dir():
            continue
        try:
            os.link(part, folder / part.name)
        except OSError:
            shutil.copy(part, folder / part.name)
    shutil.copy(REPO / "weights" / "model.json", folder / "model.json")
    return folder


def test_detectors_that_do_not_match_model_json_name_the_file(tmp_path):
    """A detector word list cut short, or thresholds for words without a detector: "error: detectors: tensors do
    not match 10 words", no file named (every other damaged part names its file)."""
    model = _linked_weights(tmp_path / "model")
    manifest = json.loads((model / "model.json").read_text())
    cases = ((("words",), manifest["detectors"]["words"][:10], "tensors do not match 10 words"),
             (("word_thresholds",), {"zzz": 0.5}, "thresholds for words without a detector: zzz"))
    for (key,), value, says in cases:
        edited = json.loads(json.dumps(manifest))
        edited["detectors"][key] = value
        (model / "model.json").write_text(json.dumps(edited))
        result = CliRunner().invoke(main, ["info", "--model", str(model)])
        assert (result.exit_code, result.stderr) == (
            1, f"error: {model / 'detectors.safetensors'}: does not match model.json ({says})\n")


def test_a_model_json_saved_with_a_byte_order_mark_loads_and_a_typo_says_where(tmp_path, tiny_model):
    """PowerShell 5's Set-Content -Encoding UTF8 begins the file with a BOM: the model no longer loaded, "unreadable
    model manifest (JSONDecodeError)", as a typo was told, with no line or column."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    text = (model / "model.json").read_text(encoding="utf-8")
    (model / "model.json").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert CliRunner().invoke(main, ["info", "--model", str(model)]).exit_code == 0
    (model / "model.json").write_text(text[:-10], encoding="utf-8")
    result = CliRunner().invoke(main, ["info", "--model", str(model)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {model / 'model.json'}: unreadable model manifest (not valid JSON, line ")


@pytest.mark.parametrize("edit", [{"extra": None}, {"vse": {"memory": "x"}}, {"vse": {"words": 5}},
                                  {"extra": {"metrics": {"msrvtt": 3}}}])
def test_info_describes_a_model_that_run_uses_whatever_its_card_fields_hold(tmp_path, edit):
    """"extra": null (or a card field of another shape) made info fail, "cannot describe the model
    (AttributeError ...)", where run and image used the model without complaint."""
    model = _linked_weights(tmp_path / "model")
    manifest = json.loads((model / "model.json").read_text())
    for key, value in edit.items():
        manifest[key] = {**manifest[key], **value} if isinstance(value, dict) and key == "vse" else value
    (model / "model.json").write_text(json.dumps(manifest))
    result = CliRunner().invoke(main, ["info", "--model", str(model)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("model:     msrvtt-cc3m-flickr8k-lite0-detectors")


def test_a_damaged_presence_head_names_its_own_file(tmp_path):
    """After the detectors' errors were given their file, the presence head's (loaded with them) was wrapped as
    "detectors.safetensors: does not match model.json (presence.safetensors: checksum mismatch ...)"."""
    import shutil

    model = _linked_weights(tmp_path / "model")
    (model / "presence.safetensors").unlink()
    shutil.copy(REPO / "weights" / "presence.safetensors", model / "presence.safetensors")
    data = bytearray((model / "presence.safetensors").read_bytes())
    data[-10] ^= 1
    (model / "presence.safetensors").write_bytes(bytes(data))
    result = CliRunner().invoke(main, ["info", "--model", str(model)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {model / 'presence.safetensors'}: checksum mismatch")


@pytest.mark.parametrize("answer, refused", [
    (b"HTTP/1.0 400 Bad request version\r\n\r\n", True),  # a web server: the dashboard's 8265, a wrong port
    (bytes([0, 0, 24, 4, 0, 0, 0, 0, 0]), False),  # a gRPC server's SETTINGS frame, as Ray's GCS answers
    (b"", False),  # nothing said in time: not judged
])
def test_an_address_where_something_else_than_ray_answers_is_one_line_at_once(answer, refused):
    """--ray-address at a port where a web server answers: the TCP check passed, and ray.init retried for about 14
    minutes (20 tries of 41 s), Ctrl-C held. Ray's servers speak gRPC; a server that does not is named at once."""
    import socket
    import threading

    from captioner.batch.ray import _unreachable

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve():
        conn, _ = server.accept()
        with conn:
            conn.recv(64)
            conn.sendall(answer)
            time.sleep(1.5 if not answer else 0.2)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        said = _unreachable(f"127.0.0.1:{port}", timeout=1.0)
    finally:
        thread.join(5)
        server.close()
    if refused:
        assert said.startswith(f"something other than a Ray head answers at 127.0.0.1:{port} (it said 'HTTP/1.0')")
    else:
        assert said is None


@pytest.mark.parametrize("error, said", [
    (TypeError("Descriptors cannot be created directly"),
     "Ray cannot be imported: TypeError: Descriptors cannot be created directly"),
    (ModuleNotFoundError("No module named 'google.protobuf'", name="google.protobuf"),
     "Ray cannot be imported: No module named 'google.protobuf'"),
    (ModuleNotFoundError("No module named 'ray'", name="ray"), "the Ray engine needs Ray: pip install 'ray>=2.9'"),
])
def test_a_broken_ray_install_is_one_line_with_its_reason(monkeypatch, error, said):
    """A Ray that fails to import (a protobuf its generated code does not fit) gave a 42-line traceback; a missing
    module of Ray's was told "the Ray engine needs Ray", though Ray was installed."""
    import builtins

    from captioner.batch.ray import require_ray
    from captioner.errors import CaptionerError

    real = builtins.__import__

    def broken(name, *args, **kwargs):
        if name == "ray":
            raise error
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    with pytest.raises(CaptionerError) as caught:
        require_ray()
    assert str(caught.value) == said

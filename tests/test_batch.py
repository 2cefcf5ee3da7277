"""``captioner batch``: folder trees, resume, isolation of bad files, SIGKILL, workers, Ray.

Every video is a tiny generated clip (64x48 px, 1-2 s) and the model is the
tiny random decoder of conftest.py, so the whole file runs in well under 90 s
on two shared cores.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import pytest
import srt
import torch
from click.testing import CliRunner

from captioner.cli import main
from captioner.find import read_output
from captioner.writers import repoint_json
from captioner.batch import BatchJob, Status
from captioner.batch.local import run_pool
from captioner.outputs import REPORT_NAME
from videos import make_video, write_garbage

GOOD = ["a.mp4", "sub/b.avi", "sub/deep/c.mp4", "sub/D.MP4"]  # extensions match in any case
BROKEN = ["bad.mp4", "empty.avi"]  # random bytes; an empty file
OTHER = ["notes.txt", "sub/cover.jpg"]  # not videos: ignored, never failures


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """``--threads`` sets torch's global thread count; give the next tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def make_tree(root: Path) -> Path:
    looks = ["red", "green", "checker", "blue", "stripes", "yellow"]
    for i, name in enumerate(GOOD):
        make_video(root / name, [(looks[i % len(looks)], 1.0), (looks[(i + 1) % len(looks)], 1.0)], seed=i)
    write_garbage(root / BROKEN[0])
    (root / BROKEN[1]).write_bytes(b"")
    for name in OTHER:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("not a video")
    (root / ".hidden").mkdir()
    write_garbage(root / ".hidden" / "x.mp4")  # hidden folders are skipped
    return root


def batch(*args, ok_codes=(0, 1)):
    result = CliRunner().invoke(main, ["batch", *map(str, args)], catch_exceptions=False)
    assert result.exit_code in ok_codes, (result.exit_code, result.output)
    return result


def unguarded_script(folder: Path, model: Path, workers: int) -> Path:
    """A script that batches folder/vids into folder/subs at module level (no ``if __name__ == "__main__":``) and
    prints the videos' statuses and the fatal error."""
    script = folder / "unguarded.py"
    script.write_text(
        "from pathlib import Path\n"
        "from captioner.batch import plan_batch, run_batch\n"
        "from captioner.config import configure\n"
        "plan = plan_batch([Path('vids')], Path('subs'), ['srt'])\n"
        f"out = run_batch(plan, configure(model_dir={str(model)!r}, beam_size=1), workers={workers})\n"
        "print([r.status.value for r in out.results])\n"
        "print(out.fatal)\n")
    return script


def run_script(script: Path) -> subprocess.CompletedProcess:
    """``python SCRIPT`` in its folder, as a user runs a library script by path (this checkout importable)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, script.name], cwd=script.parent, capture_output=True, text=True, env=env,
                          timeout=120)


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def read_report(path: Path) -> dict:
    return json.loads(path.read_text())


def by_name(report: dict) -> dict[str, dict]:
    return {Path(v["path"]).name: v for v in report["videos"]}


def test_tree_mirrored_failures_isolated_then_resumed(tmp_path, tiny_model):
    tree = make_tree(tmp_path / "in")
    out = tmp_path / "out"
    first = batch(tree, "-o", out, "--model", tiny_model, "-f", "srt,json")
    assert first.exit_code == 1  # two files failed; every other one is done
    expected = {n.rsplit(".", 1)[0] + ext for n in GOOD for ext in (".srt", ".json")}
    assert files_under(out) == expected | {REPORT_NAME}
    assert files_under(tree) == set(GOOD + BROKEN + OTHER + [".hidden/x.mp4"])  # nothing written among the inputs
    for name in GOOD:
        subs = list(srt.parse((out / name).with_suffix(".srt").read_text()))
        assert subs and all(s.content for s in subs)
        meta = json.loads((out / name).with_suffix(".json").read_text())["metadata"]
        assert meta["video"]["path"] == str(tree / name)

    errors = sorted(line for line in first.stderr.splitlines() if line.startswith("error:"))
    assert len(errors) == 2, first.stderr  # one line per broken file, nothing else
    assert errors[0].startswith(f"error: {tree / 'bad.mp4'}: ") and len(errors[0]) > len(f"error: {tree / 'bad.mp4'}: ")
    assert errors[1] == f"error: {tree / 'empty.avi'}: empty file"
    report = read_report(out / REPORT_NAME)
    assert report["totals"] == {"videos": 6, "ok": 4, "skipped": 0, "failed": 2, "pending": 0, "ignored": 2}
    rows = by_name(report)
    assert set(rows) == {Path(n).name for n in GOOD + BROKEN}
    for name in GOOD:
        row = rows[Path(name).name]
        assert row["status"] == "ok" and row["cues"] >= 1 and row["seconds"] > 0
        assert row["outputs"] == [str(out / name.rsplit(".", 1)[0]) + ext for ext in (".srt", ".json")]
    assert rows["bad.mp4"]["status"] == "failed" and rows["bad.mp4"]["reason"] == errors[0].split(": ", 2)[2]
    assert rows["empty.avi"] == {**rows["empty.avi"], "status": "failed", "reason": "empty file", "cues": None}

    # second run: the finished videos are skipped, untouched; the broken ones fail again
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.srt")}
    second = batch(tree, "-o", out, "--model", tiny_model, "-f", "srt,json")
    assert second.exit_code == 1
    report = read_report(out / REPORT_NAME)
    assert report["totals"] == {"videos": 6, "ok": 0, "skipped": 4, "failed": 2, "pending": 0, "ignored": 2}
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.srt")} == stamps
    # a format not written yet makes the video due again
    third = batch(tree, "-o", out, "--model", tiny_model, "-f", "srt", "-q")
    assert read_report(out / REPORT_NAME)["totals"]["skipped"] == 4 and third.stderr.count("\n") == 2  # -q: errors only

    # a video newer than its subtitles is redone; --overwrite redoes everything
    os.utime(tree / "a.mp4", ns=(time.time_ns(), time.time_ns() + 10**9))
    batch(tree, "-o", out, "--model", tiny_model, "-f", "srt,json")
    assert by_name(read_report(out / REPORT_NAME))["a.mp4"]["status"] == "ok"
    batch(tree, "-o", out, "--model", tiny_model, "-f", "srt,json", "--overwrite")
    report = read_report(out / REPORT_NAME)
    assert report["totals"]["ok"] == 4 and report["totals"]["skipped"] == 0


def test_batch_never_replaces_a_films_dialogue_subtitles_unasked(tmp_path, tiny_model):
    """Beside the videos, a file captioner did not write fails its video (reported, untouched) instead of being
    replaced or taken for an up-to-date output; the other videos are captioned; --overwrite replaces it."""
    tree = tmp_path / "films"
    make_video(tree / "film.mp4", [("red", 1.0)])
    make_video(tree / "home.mp4", [("blue", 1.0)], seed=1)
    dialogue = "1\n00:00:01,000 --> 00:00:02,000\nWhere are you going?\n"
    (tree / "film.srt").write_text(dialogue)  # newer than the video: it would pass for an up-to-date output
    first = batch(tree, "--model", tiny_model, "-q")
    assert first.exit_code == 1 and (tree / "film.srt").read_text() == dialogue
    assert first.stderr == (f"error: {tree / 'film.mp4'}: {tree / 'film.srt'}: exists and captioner did not write "
                            "it (dialogue subtitles? edited by hand?); --overwrite replaces it, -o DIR writes elsewhere\n")
    rows = by_name(read_report(tree / REPORT_NAME))
    assert rows["film.mp4"]["status"] == "failed" and rows["home.mp4"]["status"] == "ok"
    batch(tree, "--model", tiny_model, "-q", "--overwrite")
    assert by_name(read_report(tree / REPORT_NAME))["film.mp4"]["status"] == "ok"
    assert "Where are you going?" not in (tree / "film.srt").read_text()


def test_json_nested_too_deep_beside_a_video_or_as_the_report_fails_no_other_video(tmp_path, tiny_model):
    """'[[[...' 100,000 deep as a video's .json or as the batch report raised RecursionError out of json.loads
    (caught as ValueError only): a traceback before anything was captioned. Now the .json is a file captioner did
    not write (its video fails, the other is captioned) and the report is a damaged one (file times decide)."""
    tree = tmp_path / "films"
    make_video(tree / "a.mp4", [("red", 1.0)])
    make_video(tree / "b.mp4", [("blue", 1.0)], seed=1)
    nested = "[" * 100_000 + "]" * 100_000
    (tree / "b.json").write_text(nested)
    (tree / REPORT_NAME).write_text(nested)
    result = batch(tree, "--model", tiny_model, "-q", "-f", "json")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {tree / 'b.mp4'}: {tree / 'b.json'}: exists and captioner did not write")
    rows = by_name(read_report(tree / REPORT_NAME))
    assert rows["a.mp4"]["status"] == "ok" and rows["b.mp4"]["status"] == "failed"
    assert (tree / "b.json").read_text() == nested


def test_several_dirs_beside_videos_name_clashes_and_no_recursion(tmp_path, tiny_model):
    one, two = tmp_path / "one", tmp_path / "two"
    make_video(one / "clip.mp4", [("red", 1.0)])
    make_video(one / "clip.avi", [("blue", 1.0)])  # same name, other extension
    make_video(two / "sub" / "x.mp4", [("green", 1.0)])
    out = tmp_path / "out"
    assert batch(one, two, "-o", out, "--model", tiny_model).exit_code == 0
    # several folders: each mirrored under its own name, so they cannot collide
    assert files_under(out) == {"one/clip.mp4.srt", "one/clip.avi.srt", "two/sub/x.srt", REPORT_NAME}

    # no -o: beside each video, one report per folder; own outputs are not "ignored" files next time
    batch(one, two, "--model", tiny_model)
    assert (two / "sub" / "x.srt").is_file() and (one / "clip.mp4.srt").is_file()
    again = batch(one, two, "--model", tiny_model)
    assert again.exit_code == 0
    for folder, n in ((one, 2), (two, 1)):
        totals = read_report(folder / REPORT_NAME)["totals"]
        assert totals == {"videos": n, "ok": 0, "skipped": n, "failed": 0, "pending": 0, "ignored": 0}

    flat = batch(two, "-o", tmp_path / "flat", "--model", tiny_model, "--no-recursive")
    assert flat.exit_code == 0 and read_report(tmp_path / "flat" / REPORT_NAME)["totals"]["videos"] == 0

    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "one").mkdir()
    clash = batch(one, tmp_path / "b" / "one", "-o", out, ok_codes=(2,))
    assert "share the output folder" in clash.stderr


def test_sigkill_midway_then_rerun_completes(tmp_path, tiny_model):
    tree = tmp_path / "in"
    n = 6
    for i in range(n):
        make_video(tree / f"c{i}.mp4", [(["red", "blue", "checker", "green"][i % 4], 1.5)], seed=i)
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".c5.srt.k1ll3d_x.captioner.tmp"  # what a SIGKILL during write_atomic leaves behind
    stale.write_text("1\n00:00:00,000 --> 00:00:0")
    proc = subprocess.Popen([sys.executable, "-m", "captioner.cli", "batch", str(tree), "-o", str(out),
                             "--model", str(tiny_model), "--fps", "2", "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=Path(__file__).parent.parent)
    deadline = time.monotonic() + 60
    while not list(out.glob("*.srt")):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no output within 60 s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    done = sorted(out.glob("*.srt"))
    assert 1 <= len(done) < n, "the batch was not killed mid-way"
    for p in done:  # whatever exists is whole: written to a temp file, then renamed
        assert list(srt.parse(p.read_text()))

    rerun = batch(tree, "-o", out, "--model", tiny_model, "--fps", "2")
    assert rerun.exit_code == 0, rerun.output
    totals = read_report(out / REPORT_NAME)["totals"]
    assert (totals["skipped"], totals["ok"], totals["failed"]) == (len(done), n - len(done), 0)
    for i in range(n):
        assert list(srt.parse((out / f"c{i}.srt").read_text()))
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_a_file_that_crashes_the_batch_process_is_not_met_again_forever(tmp_path, tiny_model):
    """With one worker a batch captions in its own process: a file that crashes it (a decoder segfault) ended the
    batch, and every rerun met it again, so the files after it were never captioned. A marker beside the report names
    the file in progress; the next run captions that file alone in a worker process first, then the rest."""
    tree = tmp_path / "in"
    for i, name in enumerate(["a.mp4", "crash.mp4", "z.mp4"]):
        make_video(tree / name, [(["red", "blue", "green"][i], 1.0)], seed=i)
    out = tmp_path / "out"
    marker = out / ".captioner-batch-running"

    def run(**env):
        return subprocess.run([sys.executable, str(Path(__file__).parent / "crash_batch.py"), "batch", str(tree),
                               "-o", str(out), "--model", str(tiny_model), "--beam-size", "1", "-q"],
                              env={**os.environ, **env}, capture_output=True, text=True, timeout=300)

    first = run()
    assert first.returncode == 139 and marker.read_bytes() == os.fsencode(tree / "crash.mp4")
    assert (out / "a.srt").exists() and not (out / "z.srt").exists()  # the crash stopped the batch there
    again = run(CRASH_WORKERS="1")  # it crashes its own process too: reported, and the batch goes on
    assert again.returncode == 1, again.stderr
    assert again.stderr == f"error: {tree / 'crash.mp4'}: the worker process died on this file (it exited abruptly)\n"
    rows = by_name(read_report(out / REPORT_NAME))
    assert rows["crash.mp4"]["status"] == "failed" and rows["z.mp4"]["status"] == "ok" and not marker.exists()

    (out / "z.srt").unlink()
    assert run().returncode == 139  # killed on crash.mp4 again; this time that file is innocent in a process of its own
    last = run()
    assert last.returncode == 0, last.stderr
    rows = by_name(read_report(out / REPORT_NAME))
    assert rows["crash.mp4"]["status"] == "ok" and rows["z.mp4"]["status"] == "ok" and not marker.exists()


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("engines") / "in"
    make_video(root / "x.mp4", [("red", 1.0), ("checker", 1.0)])
    make_video(root / "deep" / "y.avi", [("blue", 2.0)], seed=1)
    write_garbage(root / "broken.mkv")
    return root


def run_engine(tree: Path, out: Path, model: Path, *extra: str) -> dict[str, bytes]:
    result = batch(tree, "-o", out, "--model", model, "-f", "all", "--threads", "1", "-q", *extra)
    assert result.exit_code == 1 and result.stderr.count("broken.mkv") == 1, result.output
    totals = read_report(out / REPORT_NAME)["totals"]
    assert (totals["ok"], totals["failed"]) == (2, 1)
    return {name: (out / name).read_bytes() for name in files_under(out) if name != REPORT_NAME}


def test_two_workers_write_the_same_files_as_one(tmp_path, tiny_model, small_tree):
    one = run_engine(small_tree, tmp_path / "w1", tiny_model)
    two = run_engine(small_tree, tmp_path / "w2", tiny_model, "--workers", "2")
    assert len(one) == 11 and one == two  # 2 videos x 5 formats (html included) + the archive index.html
    assert read_report(tmp_path / "w2" / REPORT_NAME)["workers"] == 2


def test_ray_engine_writes_the_same_files_as_local(tmp_path, tiny_model, small_tree):
    pytest.importorskip("ray", reason="the Ray extra is not installed (pip install 'ray>=2.9')")
    local = run_engine(small_tree, tmp_path / "local", tiny_model)
    on_ray = run_engine(small_tree, tmp_path / "ray", tiny_model, "--engine", "ray", "--workers", "2")
    assert len(local) == 11 and on_ray == local  # 2 videos x 5 formats + index.html
    assert read_report(tmp_path / "ray" / REPORT_NAME)["engine"] == "ray"


def test_ray_missing_is_one_line(tmp_path, tiny_model, small_tree, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    result = batch(small_tree, "-o", tmp_path / "o", "--engine", "ray", ok_codes=(1,))
    assert result.stderr == "error: the Ray engine needs Ray: pip install 'ray>=2.9'\n"
    assert not (tmp_path / "o").exists()
    usage = batch(small_tree, "--ray-address", "auto", ok_codes=(2,))
    assert "--engine ray" in usage.stderr
    # an unset variable ($RAY_ADDRESS): it ran on a private local instance, not the cluster
    empty = batch(small_tree, "-o", tmp_path / "o", "--engine", "ray", "--ray-address", " ", ok_codes=(2,))
    assert "Invalid value for '--ray-address': an empty address" in empty.stderr
    assert not (tmp_path / "o").exists()


def test_the_private_ray_instance_is_started_on_the_loopback(tmp_path, tiny_model, small_tree, monkeypatch):
    """batch --engine ray without --ray-address started Ray on the machine's network address: its GCS, raylet and
    workers listened on all interfaces, and anyone on the network could run code in the unauthenticated instance."""
    ray = pytest.importorskip("ray", reason="the Ray extra is not installed (pip install 'ray>=2.9')")
    from ray._private import ray_constants

    seen = []

    def init(**kwargs):  # what Ray would start with, and whether it would turn 127.0.0.1 into the network address
        seen.append((kwargs, ray_constants.ENABLE_RAY_CLUSTER))
        raise RuntimeError("not started in this test")

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    cluster = ray_constants.ENABLE_RAY_CLUSTER
    result = batch(small_tree, "-o", tmp_path / "o", "--model", tiny_model, "--engine", "ray", "-q", ok_codes=(1,))
    assert "cannot start Ray: not started in this test" in result.stderr
    [(kwargs, cluster_during)] = seen
    assert kwargs["address"] == "local" and kwargs["_node_ip_address"] == "127.0.0.1"
    assert kwargs["include_dashboard"] is False and kwargs["dashboard_host"] == "127.0.0.1"
    assert cluster_during is False and ray_constants.ENABLE_RAY_CLUSTER == cluster  # off for ray.init alone


def _listening(pids: set[int]) -> list[str]:
    """The local addresses of the TCP sockets that processes ``pids`` listen on (Linux /proc)."""
    import ipaddress

    inodes = set()
    for pid in pids:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:  # gone, or not ours to read
            continue
        inodes |= {link[8:-1] for link in links if link.startswith("socket:[")}
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(fields[1].split(":")[0])
            packed = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # each 32-bit word is little-endian
            found.append(str(ipaddress.ip_address(packed)))
    return found


def _descendants(root: int) -> set[int]:
    parents = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, grown = {root}, True
    while grown:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        found |= more
        grown = bool(more)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the listening sockets from Linux's /proc")
def test_the_private_ray_instance_listens_on_the_loopback_only(tmp_path, tiny_model, small_tree, monkeypatch):
    """The real instance: every TCP socket its processes listen on is a loopback one (they were all 0.0.0.0/::)."""
    import ipaddress

    ray = pytest.importorskip("ray", reason="the Ray extra is not installed (pip install 'ray>=2.9')")
    addresses = []
    resources = ray.cluster_resources

    def look(*args, **kwargs):  # called once Ray is up, before the actors start
        addresses.extend(_listening(_descendants(os.getpid())))
        return resources(*args, **kwargs)

    monkeypatch.setattr(ray, "cluster_resources", look)
    result = batch(small_tree, "-o", tmp_path / "o", "--model", tiny_model, "--engine", "ray", "--workers", "1",
                   "--threads", "1", "-q", ok_codes=(1,))  # 1: the tree's broken file
    assert result.stderr.count("broken.mkv") == 1, result.stderr
    assert len(addresses) >= 3, addresses  # the driver, the GCS, the raylet
    ips = [ipaddress.ip_address(a) for a in addresses]  # Ray's gRPC servers bind ::ffff:127.0.0.1
    assert all(ip.is_loopback or getattr(ip, "ipv4_mapped", None) and ip.ipv4_mapped.is_loopback for ip in ips), \
        addresses


def test_a_worker_that_dies_costs_only_its_file(tmp_path):
    """A decoder segfault kills a worker process: that file fails, the others still run.

    Through the local engine's pool (``run_pool``, public for any task), with a task that
    ends its worker process on one file as a segfault would, so no model is needed.
    """
    names = ["a.mp4", "crash.mp4", "b.mp4", "c.mp4", "d.mp4"]
    jobs = [BatchJob(tmp_path / n, tmp_path / n, n, 0) for n in names]
    import batch_tasks

    results = []
    run_pool(jobs, 2, batch_tasks.crash_or_succeed, None, (), results.append)
    status = {r.shown: (r.status, r.reason) for r in results}
    assert sorted(status) == sorted(names)  # each file reported exactly once
    assert status.pop("crash.mp4") == (Status.FAILED, "the worker process died on this file (it exited abruptly)")
    assert all(s is Status.OK for s, _ in status.values())


def test_workers_are_born_with_ctrl_c_ignored(tmp_path):
    """Ctrl-C reaches every process of the terminal's group: a worker still importing (before its initializer
    ignores SIGINT) printed a KeyboardInterrupt traceback above the batch's "interrupted". Workers are started
    with SIGINT blocked; the batch process's own handler and mask are as they were after."""
    import signal

    import batch_tasks

    handler, mask = signal.getsignal(signal.SIGINT), signal.pthread_sigmask(signal.SIG_BLOCK, [])
    jobs = [BatchJob(tmp_path / n, tmp_path / n, n, 0) for n in ("a.mp4", "b.mp4")]
    results = []
    run_pool(jobs, 2, batch_tasks.report_sigint, None, (), results.append)
    assert {r.reason for r in results} == {"blocked"}
    assert signal.getsignal(signal.SIGINT) is handler and signal.pthread_sigmask(signal.SIG_BLOCK, []) == mask


def test_a_ctrl_c_while_workers_start_is_not_lost():
    """SIGINT ignored in the batch process while its workers started: another of its threads (tqdm's monitor) took
    a Ctrl-C that came then and threw it away, and the batch ran to its end."""
    import signal
    import threading

    from captioner.batch.local import _workers_born_deaf

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, args=(10,))  # a thread that does not block SIGINT
    other.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            with _workers_born_deaf():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)
            time.sleep(1)
    finally:
        stop.set()
        other.join()


def test_workers_that_die_while_starting_blame_no_file(tmp_path):
    """Workers that die before their first file (here in the initializer, as a crash loading the model would):
    each file in flight was "failed: the worker process died on this file", retried alone, and failed again."""
    from captioner.errors import CaptionerError

    jobs = [BatchJob(tmp_path / n, tmp_path / n, n, 0) for n in ("a.mp4", "b.mp4", "c.mp4")]
    import batch_tasks

    results = []
    with pytest.raises(CaptionerError, match=r"^the 2 worker processes could not start: a worker ended while "
                                             r"loading the model, before the first file"):
        run_pool(jobs, 2, batch_tasks.crash_or_succeed, batch_tasks.die_at_start, (), results.append)
    assert results == []
    # the file retried alone in a pool whose worker could not start is not blamed either (it was "failed" and
    # the batch said "could not start" too)
    jobs = [BatchJob(tmp_path / "crash.mp4", tmp_path / "crash.mp4", "crash.mp4", 0)]
    with pytest.raises(CaptionerError, match=r"^the 2 worker processes could not start"):
        run_pool(jobs, 2, batch_tasks.crash_and_mark, batch_tasks.die_if_marked, (str(tmp_path),), results.append)
    assert (tmp_path / "crashed").exists() and results == []


def test_a_script_that_runs_a_two_worker_batch_unguarded_is_told_why_and_blames_no_video(tmp_path, tiny_model):
    """A script calling run_batch(workers=2) at module level (no ``if __name__ == "__main__":``): each worker
    ran the script again and died in multiprocessing's bootstrapping (a RuntimeError traceback each), and every
    good video was reported "failed: the worker process died on this file"."""
    make_video(tmp_path / "vids" / "a.mp4", [("red", 1.0)])
    make_video(tmp_path / "vids" / "b.mp4", [("blue", 1.0)])
    script = unguarded_script(tmp_path, tiny_model, workers=2)
    done = run_script(script)
    assert done.returncode == 0, done.stderr
    statuses, fatal = done.stdout.splitlines()[-2:]
    assert statuses == "['pending', 'pending']"
    assert fatal == (f"worker processes could not start: each runs {script} again as it starts; a script "
                     "that calls run_batch with workers > 1 must do so under 'if __name__ == \"__main__\":' "
                     "(as multiprocessing requires)")
    assert "Traceback" not in done.stderr and "bootstrapping" not in done.stderr


def test_a_report_that_cannot_be_written_is_one_error_line(tmp_path):
    """The batch still ends with its summary; the report's failure is one ``error:`` line, and exit 1 (it was 0 for
    want of a failed video: an error line with success, and a next run that cannot tell what this one did)."""
    tree = tmp_path / "in"
    tree.mkdir()
    (tree / "notes.txt").write_text("not a video")
    out = tmp_path / "out"
    (out / REPORT_NAME).mkdir(parents=True)  # a folder where the report should go
    result = batch(tree, "-o", out, ok_codes=(1,))
    lines = result.stderr.splitlines()
    assert lines[0] == f"no videos found in {tree}"
    assert lines[1] == f"error: cannot write the report: {out / REPORT_NAME}: cannot write: Is a directory"
    assert lines[2].startswith("0 captioned, 0 up to date, 0 failed, 1 non-video file(s) ignored in ")
    assert "report:" not in lines[2] and len(lines) == 3


def test_workers_inherit_one_int8_decision(tmp_path, tiny_model, small_tree, monkeypatch):
    """Where the int8 copy is inaccurate, a batch warns once (not once per worker) and its workers run float32."""
    pytest.importorskip("onnxruntime", reason="ONNX Runtime not installed: the torch path is used")
    from captioner import encoder as encoder_mod

    monkeypatch.setattr(encoder_mod, "int8_agreement", lambda quantized, reference, x: 0.64)
    out = tmp_path / "int8"
    result = batch(small_tree, "-o", out, "--model", tiny_model, "-f", "json", "--threads", "1", "--workers", "2", "--int8")
    assert result.exit_code == 1 and result.stderr.count("broken.mkv") == 1, result.output
    warned = [line for line in result.stderr.splitlines() if "int8 encoder is inaccurate" in line]
    assert len(warned) == 1, result.stderr
    for name in ("x.json", "deep/y.json"):
        assert json.loads((out / name).read_text())["metadata"]["model"]["encoder_precision"] == "float32"


def test_the_library_batch_locks_a_new_output_folder_against_other_threads_too(tmp_path, monkeypatch):
    """run_batch into an output folder that did not exist yet locked nothing (the folder was made later, by the
    writers): another batch wrote there beside it, and no marker of the video being captioned was kept. And the
    lock is the process's: a second run_batch in another thread took it for its own and wrote beside the first.
    A caller holding the lock in one thread still plans and runs the batch in another (a GUI's worker thread)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import captioner.batch as batch_pkg
    from captioner.batch import LOCK_NAME, exclusive, plan_batch, run_batch
    from captioner.config import CaptionConfig
    from captioner.errors import CaptionerError

    tree, out = tmp_path / "in", tmp_path / "out"
    tree.mkdir()
    (tree / "a.mp4").write_bytes(b"not decoded here")
    plan = plan_batch([tree], out, ["srt"])
    seen = {}

    def engine(jobs, config, *, workers, on_result, marker):
        seen["lock"] = (out / LOCK_NAME).exists()
        seen["marker_folder"] = marker is not None and marker.parent.is_dir()
        if "other" in seen:
            return

        def other_thread():
            try:
                run_batch(plan, CaptionConfig())
                seen["other"] = "ran beside it"
            except CaptionerError as exc:
                seen["other"] = str(exc)
            try:  # its plan too: it removed the running batch's temporary files as stale
                plan_batch([tree], out, ["srt"])
                seen["other plan"] = "planned beside it"
            except CaptionerError as exc:
                seen["other plan"] = str(exc)

        temporary.write_text("half of a.srt")  # as a worker writing it leaves it for a moment
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        seen["temporary kept"] = temporary.exists()

    temporary = out / ".a.srt.abcd1234.captioner.tmp"
    monkeypatch.setattr(batch_pkg, "run_local", engine)
    run_batch(plan, CaptionConfig())
    assert seen["lock"] and seen["marker_folder"] and seen["temporary kept"]
    assert "another captioner batch of this process is writing there" in seen["other"]
    assert "another captioner batch of this process is writing there" in seen["other plan"]
    # the lock held in this thread, the batch planned and run in a worker thread
    with exclusive([out]), ThreadPoolExecutor(1) as pool:
        again = pool.submit(plan_batch, [tree], out, ["srt"]).result()
        outcome = pool.submit(run_batch, again, CaptionConfig()).result()
    assert outcome.fatal is None


def test_a_full_disk_stops_the_batch_and_leaves_the_rest_pending(tmp_path, monkeypatch):
    """A full output disk: every later video was captioned in full and failed the same way, a line each (hours of
    a large archive), then the report could not be written either. The batch stops at the first such failure."""
    import captioner.batch.local as local
    from captioner.batch import FileResult, plan_batch, run_batch
    from captioner.config import CaptionConfig

    tree, out = tmp_path / "in", tmp_path / "out"
    tree.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (tree / name).write_bytes(b"not decoded here")
    captioned = []

    def full_disk(captioner, job, config):
        captioned.append(job.shown)
        return FileResult(str(job.video), Status.FAILED, f"{out / 'a.srt'}: cannot write: No space left on device",
                          shown=job.shown, root=job.root)

    import captioner.pipeline as pipeline

    monkeypatch.setattr(pipeline, "Captioner", lambda config: None)
    monkeypatch.setattr(local, "run_job", full_disk)
    outcome = run_batch(plan_batch([tree], out, ["srt"]), CaptionConfig())
    assert len(captioned) == 1 and "the disk the outputs go to is full" in str(outcome.fatal)
    assert sorted(r.status.value for r in outcome.results) == ["failed", "pending", "pending"]

    # the stop once: an engine stopping delivers what its other workers finished, full-disk failures too, and must
    # go on stopping them (a second raise skipped that, and the batch waited for every running video)
    import captioner.batch as batch_pkg

    stopped = []

    def engine(jobs, config, *, workers, on_result, marker):
        try:
            on_result(full_disk(None, jobs[0], config))
        except BaseException:
            on_result(full_disk(None, jobs[1], config))
            stopped.append(True)
            raise

    monkeypatch.setattr(batch_pkg, "run_local", engine)
    outcome = run_batch(plan_batch([tree], out, ["srt"]), CaptionConfig())
    assert stopped and sorted(r.status.value for r in outcome.results) == ["failed", "failed", "pending"]

    # the cause at the end however the writer words it: an OSError's file, what was replaced before it failed
    from captioner.batch import _DISK_FULL

    assert _DISK_FULL.search("OSError: [Errno 28] No space left on device: '/o/x'")
    assert _DISK_FULL.search(f"{out / 'a.json'}: cannot write: No space left on device ({out / 'a.srt'} replaced already)")
    # a reason that names such a file, not the disk's state: that video fails, the batch goes on
    monkeypatch.undo()
    monkeypatch.setattr(pipeline, "Captioner", lambda config: None)
    monkeypatch.setattr(local, "run_job", lambda captioner, job, config: FileResult(
        str(job.video), Status.FAILED, f"{out / 'No space left on device.srt'}: exists and captioner did not write it",
        shown=job.shown, root=job.root))
    outcome = run_batch(plan_batch([tree], out, ["srt"]), CaptionConfig())
    assert outcome.fatal is None and [r.status.value for r in outcome.results] == ["failed"] * 3


def test_a_stopped_batch_leaves_no_temporary_file(tmp_path, monkeypatch):
    """A worker stopped inside ``write_atomic`` leaves its hidden temporary file; the batch removes it as it stops.

    The race the SIGTERM test meets now and then, made certain: an engine that finishes one
    video, leaves the other's temporary file as a terminated worker would, then is interrupted.
    """
    import captioner.batch as batch_pkg
    from captioner.batch import FileResult, plan_batch, run_batch
    from captioner.config import CaptionConfig

    tree, out = tmp_path / "in", tmp_path / "out"
    tree.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (tree / name).write_bytes(b"not decoded here")
    plan = plan_batch([tree], out, ["srt"])
    other = out / ".b.srt.notes"  # not a name captioner's writers make: never touched

    def stopped_engine(jobs, config, *, workers, on_result, marker):
        first = min(jobs, key=lambda j: j.shown)
        out.mkdir(exist_ok=True)
        (out / "a.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\na caption\n")
        on_result(FileResult(str(first.video), Status.OK, "", outputs=(str(out / "a.srt"),), shown=first.shown))
        (out / ".b.srt.k3j9x2_a.captioner.tmp").write_text("1\n00:00:00,000 --> 00:")
        other.write_text("the user's")
        raise KeyboardInterrupt

    monkeypatch.setattr(batch_pkg, "run_local", stopped_engine)
    with pytest.raises(KeyboardInterrupt):
        run_batch(plan, CaptionConfig())
    assert sorted(p.name for p in out.iterdir()) == [".b.srt.notes", "a.srt", REPORT_NAME]
    statuses = {Path(v["path"]).name: v["status"] for v in json.loads((out / REPORT_NAME).read_text())["videos"]}
    assert statuses == {"a.mp4": "ok", "b.mp4": "pending"}


def test_videos_named_like_the_batchs_own_files(tmp_path, tiny_model):
    """captioner-report.mp4's JSON was replaced by the report (and failed every rerun); an index page
    was read as a video's page on the rerun (a traceback). Now such a video fails with a reason, and
    index.mp4 keeps index.html as its page while the index takes the other name."""
    tree = tmp_path / "in"
    for i, name in enumerate(["captioner-report.mp4", "captioner-index.mp4", "index.mp4", "ok.mp4"]):
        make_video(tree / name, [("red", 1.0)], seed=i)
    for run in range(2):
        result = batch(tree, "--model", tiny_model, "-f", "json,html", "-q")
        assert result.exit_code == 1 and "Traceback" not in result.output
        report = by_name(read_report(tree / REPORT_NAME))
        assert {n: v["status"] for n, v in report.items()} == {
            "captioner-report.mp4": "failed", "captioner-index.mp4": "failed",
            "index.mp4": "ok" if run == 0 else "skipped", "ok.mp4": "ok" if run == 0 else "skipped"}
        assert "the batch's own captioner-report.json" in report["captioner-report.mp4"]["reason"]
        assert "the batch's own captioner-index.html" in report["captioner-index.mp4"]["reason"]
        assert json.loads((tree / "index.json").read_text())["cues"]  # index.mp4's own outputs
        assert '"cues"' in (tree / "index.html").read_text() and "ok.html" in (tree / "captioner-index.html").read_text()


def test_resume_knows_the_video_it_captioned_not_only_file_times(tmp_path, tiny_model):
    """The resume test was 'outputs newer than the video': a video replaced by an older file
    (cp -p, rsync -a, tar x) kept its old captions, and one dated in the future was captioned
    again on every run, so a stopped batch never finished. The report now records each video's
    size and time as captioned."""
    tree = tmp_path / "in"
    make_video(tree / "a.mp4", [("red", 1.0)], seed=0)
    make_video(tree / "b.mp4", [("green", 1.0)], seed=1)
    make_video(tmp_path / "other.mp4", [("checker", 1.0), ("blue", 1.0)], seed=2)
    future = time.time() + 86400
    os.utime(tree / "b.mp4", (future, future))
    status = lambda: {n: v["status"] for n, v in by_name(read_report(tree / REPORT_NAME)).items()}  # noqa: E731
    batch(tree, "--model", tiny_model, "-f", "srt,json", "-q")
    assert status() == {"a.mp4": "ok", "b.mp4": "ok"}
    assert by_name(read_report(tree / REPORT_NAME))["a.mp4"]["source"]["size"] == (tree / "a.mp4").stat().st_size
    batch(tree, "--model", tiny_model, "-f", "srt,json", "-q")
    assert status() == {"a.mp4": "skipped", "b.mp4": "skipped"}  # the future one too
    old = (tree / "a.mp4").stat().st_mtime - 3600
    (tree / "a.mp4").write_bytes((tmp_path / "other.mp4").read_bytes())  # replaced, dated before its outputs
    os.utime(tree / "a.mp4", (old, old))
    assert (tree / "a.mp4").stat().st_mtime_ns < (tree / "a.srt").stat().st_mtime_ns
    batch(tree, "--model", tiny_model, "-f", "srt,json", "-q")
    assert status() == {"a.mp4": "ok", "b.mp4": "skipped"}
    assert json.loads((tree / "a.json").read_text())["metadata"]["video"]["duration"] == 2.0  # the new video's
    # without a report (outputs of an older version, or of run) the file times decide, as before
    (tree / REPORT_NAME).unlink()
    batch(tree, "--model", tiny_model, "-f", "srt,json", "-q")
    assert status() == {"a.mp4": "skipped", "b.mp4": "ok"}


def test_a_caption_file_corrected_by_hand_is_kept_and_its_unchanged_video_skipped(tmp_path, tiny_model):
    """The review page's Download .srt saves UTF-8 with a byte-order mark so that a corrected file is never taken
    for captioner's own. Saved over the batch's .srt, it made its unchanged video fail on every later batch
    ("exists and captioner did not write it"), its page left out of index.html, until --overwrite destroyed the
    correction. The report's record says the video is unchanged since: it is skipped, the correction kept."""
    tree = tmp_path / "in"
    make_video(tree / "a.mp4", [("red", 1.0)], seed=0)
    batch(tree, "--model", tiny_model, "-f", "srt,json,html", "-q")
    corrected = "\ufeff1\n00:00:00,000 --> 00:00:01,000\nA red screen, corrected\n"
    (tree / "a.srt").write_text(corrected, encoding="utf-8")
    result = batch(tree, "--model", tiny_model, "-f", "srt,json,html", "-q")
    assert result.exit_code == 0 and result.stderr == ""
    assert by_name(read_report(tree / REPORT_NAME))["a.mp4"]["status"] == "skipped"
    assert (tree / "a.srt").read_text(encoding="utf-8") == corrected
    assert 'href="a.html"' in (tree / "index.html").read_text(encoding="utf-8")
    # a video changed since, or no record of it (a film's dialogue .srt found beside it): not replaced, one error
    (tree / REPORT_NAME).unlink()
    result = batch(tree, "--model", tiny_model, "-f", "srt,json,html", "-q")
    assert result.exit_code == 1 and "exists and captioner did not write it" in result.stderr
    assert (tree / "a.srt").read_text(encoding="utf-8") == corrected


def test_a_new_format_keeps_the_outputs_corrected_by_hand(tmp_path, tiny_model):
    """-f srt,json then -f srt,json,vtt captioned the unchanged video again and wrote every format: a JSON
    corrected by hand (it stays captioner's: it has its metadata) and an .srt edited in lower case went back
    to the model's words, unsaid. The outputs the report vouches for are kept; only the new format is written."""
    tree = tmp_path / "in"
    make_video(tree / "a.mp4", [("red", 1.0)], seed=0)
    batch(tree, "--model", tiny_model, "-f", "srt,json", "-q")
    data = json.loads((tree / "a.json").read_text())
    data["cues"][0]["text"] = "A red screen, checked by Anna."
    (tree / "a.json").write_text(json.dumps(data, indent=2))
    srt_lines = (tree / "a.srt").read_text().splitlines()
    srt_lines[2] = "a red screen, corrected by hand"
    (tree / "a.srt").write_text("\n".join(srt_lines) + "\n")
    edited = {f: (tree / f"a.{f}").read_bytes() for f in ("srt", "json")}
    result = batch(tree, "--model", tiny_model, "-f", "srt,json,vtt", "-q")
    assert result.exit_code == 0 and result.stderr == ""
    assert {f: (tree / f"a.{f}").read_bytes() for f in ("srt", "json")} == edited
    assert (tree / "a.vtt").read_text().startswith("WEBVTT")
    row = by_name(read_report(tree / REPORT_NAME))["a.mp4"]
    assert row["status"] == "ok" and sorted(Path(o).name for o in row["outputs"]) == ["a.json", "a.srt", "a.vtt"]
    # the next run: all three up to date, the corrections still there
    result = batch(tree, "--model", tiny_model, "-f", "srt,json,vtt", "-q")
    assert by_name(read_report(tree / REPORT_NAME))["a.mp4"]["status"] == "skipped"
    assert {f: (tree / f"a.{f}").read_bytes() for f in ("srt", "json")} == edited
    # --overwrite still writes them all again
    batch(tree, "--model", tiny_model, "-f", "srt,json,vtt", "--overwrite", "-q")
    assert json.loads((tree / "a.json").read_text())["cues"][0]["text"] != "A red screen, checked by Anna."


@pytest.mark.parametrize("how", ["archive moved", "video renamed", "output folder moved"])
def test_kept_outputs_name_the_video_where_it_is_now(tmp_path, tiny_model, how):
    """A format added after the archive moved (or the video was renamed, or -o moved alone): the kept JSON and
    review page still named the old place, run after run (written again, as before, they named the new one)."""
    tree, out = tmp_path / "arch", tmp_path / "out"
    make_video(tree / "a.mp4", [("red", 1.0)], seed=0)
    args = ["-o", str(out)] if how == "output folder moved" else []
    batch(tree, *args, "--model", tiny_model, "-f", "json,html", "-q")
    if how == "archive moved":
        tree = tree.rename(tmp_path / "arch2")
        out = tree
    elif how == "video renamed":
        (tree / "a.mp4").rename(tree / "a.mov")
        out = tree
    else:
        (tmp_path / "sub").mkdir()
        out = out.rename(tmp_path / "sub" / "out2")
        args = ["-o", str(out)]
    video = tree / ("a.mov" if how == "video renamed" else "a.mp4")
    batch(tree, *args, "--model", tiny_model, "-f", "json,html,srt", "-q")
    assert json.loads((out / "a.json").read_text())["metadata"]["video"]["path"] == str(video)
    page = (out / "a.html").read_text(encoding="utf-8")
    src = re.search(r'<video id="video"[^>]* src="([^"]*)"', page).group(1)
    assert (out / unquote(src)).resolve() == video.resolve()


def test_a_batch_killed_after_a_format_was_added_is_finished_not_redone(tmp_path, tiny_model):
    """-f json, then -f json,srt killed (kill -9: no report written) after some .srt files: the next run captioned
    every video again, as the old report's records do not list the new .srt. One written after that report, by
    captioner, of a video unchanged since the record, was made from it: the video is up to date."""
    tree = tmp_path / "in"
    make_video(tree / "a.mp4", [("red", 1.0)], seed=0)
    make_video(tree / "b.mp4", [("blue", 1.0)], seed=1)
    batch(tree, "--model", tiny_model, "-f", "json", "-q")
    report_ns = (tree / REPORT_NAME).stat().st_mtime_ns
    json_b = (tree / "b.json").read_bytes()
    # what the killed run left: a.srt, written after the report (its JSON rewritten alike)
    result = CliRunner().invoke(main, ["run", str(tree / "a.mp4"), "--model", str(tiny_model), "-f", "srt", "-q"])
    assert result.exit_code == 0, result.output
    os.utime(tree / "a.srt", ns=(report_ns + 10**9, report_ns + 10**9))
    srt_a = (tree / "a.srt").read_bytes()
    batch(tree, "--model", tiny_model, "-f", "json,srt", "-q")
    rows = by_name(read_report(tree / REPORT_NAME))
    assert rows["a.mp4"]["status"] == "skipped" and rows["b.mp4"]["status"] == "ok"
    assert (tree / "a.srt").read_bytes() == srt_a and (tree / "b.json").read_bytes() == json_b  # b: only its .srt new
    assert sorted(Path(o).name for o in rows["a.mp4"]["outputs"]) == ["a.json", "a.srt"]
    # the new report lists a.srt as made from a.mp4: a third run skips both, their cue counts kept
    counts = {name: row["cues"] for name, row in rows.items()}
    batch(tree, "--model", tiny_model, "-f", "json,srt", "-q")
    rows = by_name(read_report(tree / REPORT_NAME))
    assert {v["status"] for v in rows.values()} == {"skipped"}
    assert {name: row["cues"] for name, row in rows.items()} == counts and counts["b.mp4"] >= 1
    assert counts["a.mp4"] == len(json.loads((tree / "a.json").read_text())["cues"])  # a: counted in its JSON
    # an .srt older than the report (of the video before it was replaced, say) does not count
    (tree / "b.srt").unlink()
    os.utime(tree / "a.srt", ns=(report_ns - 10**9, report_ns - 10**9))
    (tree / REPORT_NAME).unlink()
    batch(tree, "--model", tiny_model, "-f", "json", "-q")
    report_ns = (tree / REPORT_NAME).stat().st_mtime_ns
    os.utime(tree / "a.srt", ns=(report_ns - 10**9, report_ns - 10**9))
    batch(tree, "--model", tiny_model, "-f", "json,srt", "-q")
    assert by_name(read_report(tree / REPORT_NAME))["a.mp4"]["status"] == "ok"


@pytest.mark.parametrize("output_dir", [False, True])
def test_resume_knows_its_videos_after_the_archive_moved(tmp_path, tiny_model, output_dir):
    """The report's records were found by the video's absolute path only: once the archive was moved or renamed
    (with -o OUT kept, or with the outputs beside the videos), a video replaced by an older file (cp -p) was
    "up to date" by file times and kept the first video's captions. A record is now also found by the video's
    path inside its input folder, its outputs moved as the report was."""
    tree, out = tmp_path / "in", tmp_path / "out"
    make_video(tree / "d" / "a.mp4", [("red", 1.0)], seed=0)
    make_video(tree / "d" / "b.mp4", [("green", 1.0)], seed=1)
    make_video(tmp_path / "other.mp4", [("checker", 1.0), ("blue", 1.0)], seed=2)
    where = lambda root: ("-o", out) if output_dir else ()  # noqa: E731
    batch(tree, *where(tree), "--model", tiny_model, "-f", "srt,json", "-q")
    moved = tree.rename(tmp_path / "moved")
    dest = out if output_dir else moved
    first = (dest / "d" / "a.srt").stat().st_mtime
    (moved / "d" / "a.mp4").write_bytes((tmp_path / "other.mp4").read_bytes())
    os.utime(moved / "d" / "a.mp4", (first - 3600, first - 3600))  # dated before its outputs, as cp -p leaves it
    batch(moved, *where(moved), "--model", tiny_model, "-f", "srt,json", "-q")
    rows = by_name(read_report(dest / REPORT_NAME))
    assert (rows["a.mp4"]["status"], rows["b.mp4"]["status"]) == ("ok", "skipped")
    assert json.loads((dest / "d" / "a.json").read_text())["metadata"]["video"]["duration"] == 2.0  # the new video's
    batch(moved, *where(moved), "--model", tiny_model, "-f", "srt,json", "-q")
    assert {n: r["status"] for n, r in by_name(read_report(dest / REPORT_NAME)).items()} == {"a.mp4": "skipped",
                                                                                           "b.mp4": "skipped"}


@pytest.mark.parametrize("output_dir", [False, True])
def test_a_moved_archives_json_names_where_its_video_is_now(tmp_path, tiny_model, output_dir):
    """After the archive moved, its videos were skipped as up to date but their JSON kept the old absolute path:
    ``captioner search`` answered with a file that was not there. The JSON now names the video where it is; its
    cues, a hand correction included, stay as they were."""
    tree, out = tmp_path / "in", tmp_path / "out"
    make_video(tree / "d" / "a.mp4", [("red", 1.0)], seed=0)
    where = lambda root: ("-o", out) if output_dir else ()  # noqa: E731
    batch(tree, *where(tree), "--model", tiny_model, "-f", "srt,json", "-q")
    dest = out if output_dir else tree
    doc = json.loads((dest / "d" / "a.json").read_text())
    doc["cues"][0]["text"] = "a red wall, checked"
    (dest / "d" / "a.json").write_text(json.dumps(doc, indent=2))
    moved = tree.rename(tmp_path / "moved")
    dest = out if output_dir else moved
    result = batch(moved, *where(moved), "--model", tiny_model, "-f", "srt,json", "-q")
    assert result.exit_code == 0 and result.stderr == ""
    assert by_name(read_report(dest / REPORT_NAME))["a.mp4"]["status"] == "skipped"
    now = json.loads((dest / "d" / "a.json").read_text())
    assert now["metadata"]["video"]["path"] == str(moved / "d" / "a.mp4")
    assert now["cues"] == doc["cues"] and {k: v for k, v in now["metadata"]["video"].items() if k != "path"} == {
        k: v for k, v in doc["metadata"]["video"].items() if k != "path"}
    assert read_output(dest / "d" / "a.json")[0] == str(moved / "d" / "a.mp4")  # what search reads and answers
    again = moved.rename(tmp_path / "again")  # a later batch without -f json: the JSON an earlier one wrote too
    dest = out if output_dir else again
    assert batch(again, *where(again), "--model", tiny_model, "-f", "srt", "-q").exit_code == 0
    assert read_output(dest / "d" / "a.json")[0] == str(again / "d" / "a.mp4")
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"metadata": {"video": "x.mp4"}, "cues": []}')
    assert not repoint_json(foreign, again / "d" / "a.mp4") and '"x.mp4"' in foreign.read_text()
    # a JSON that is a link is written where it points; the same video reached through a linked folder is kept
    store = tmp_path / "store.json"
    (dest / "d" / "a.json").rename(store)
    (dest / "d" / "a.json").symlink_to(store)
    (tmp_path / "link").symlink_to(again)
    assert not repoint_json(dest / "d" / "a.json", tmp_path / "link" / "d" / "a.mp4")
    assert repoint_json(dest / "d" / "a.json", tmp_path / "other.mp4")
    assert (dest / "d" / "a.json").is_symlink() and read_output(store)[0] == str(tmp_path / "other.mp4")


@pytest.mark.parametrize("output_dir", [False, True])
def test_outputs_of_deleted_videos_are_kept_and_named(tmp_path, tiny_model, output_dir):
    """A video deleted or renamed since a batch left its outputs in the archive, searchable, and no later run said
    so. They are kept (a batch deletes nothing it wrote) and named: a summary note and the report's "gone", on
    every run while they exist, also after the archive moved."""
    tree, out = tmp_path / "in", tmp_path / "out"
    make_video(tree / "a.mp4", [("red", 1.0)], seed=0)
    make_video(tree / "d" / "b.mp4", [("green", 1.0)], seed=1)
    where = lambda root: ("-o", out) if output_dir else ()  # noqa: E731
    batch(tree, *where(tree), "--model", tiny_model, "-f", "srt,json")
    (tree / "d" / "b.mp4").unlink()
    (tree / "a.mp4").rename(tree / "c.mp4")
    result = batch(tree, *where(tree), "--model", tiny_model, "-f", "srt,json")
    assert result.exit_code == 0 and "note: 2 videos captioned before are no longer there (deleted or renamed)" in result.stderr
    dest = out if output_dir else tree
    report = read_report(dest / REPORT_NAME)
    assert report["totals"]["gone"] == 2 and [g["path"] for g in report["gone"]] == [str(tree / "a.mp4"),
                                                                                     str(tree / "d" / "b.mp4")]
    assert report["gone"][1]["outputs"] == [str(dest / "d" / "b.srt"), str(dest / "d" / "b.json")]
    assert (dest / "d" / "b.json").is_file() and (dest / "a.json").is_file()  # kept
    (dest / "a.srt").unlink()
    (dest / "a.json").unlink()
    moved = tree.rename(tmp_path / "moved")
    dest = out if output_dir else moved
    result = batch(moved, *where(moved), "--model", tiny_model, "-f", "srt,json")
    assert result.exit_code == 0 and "note: 1 video captioned before is no longer" in result.stderr
    report = read_report(dest / REPORT_NAME)
    assert report["gone"] == [{"path": str(moved / "d" / "b.mp4"),
                               "outputs": [str(dest / "d" / "b.srt"), str(dest / "d" / "b.json")]}]
    (dest / "d" / "b.srt").unlink()
    (dest / "d" / "b.json").unlink()
    result = batch(moved, *where(moved), "--model", tiny_model, "-f", "srt,json")
    assert "note:" not in result.stderr and "gone" not in read_report(dest / REPORT_NAME)


def test_gone_and_moved_folders_are_matched_by_what_they_are_not_their_order(tmp_path, tiny_model):
    """Report folders were matched to this run's by position: another folder batched into the same -o OUT took the
    first one's videos for its own, and those it lacked were "gone" (videos that still existed); input folders given
    in another order after a move swapped their videos. A folder still there has not moved; a moved one is matched
    by its name (several folders under -o OUT have their outputs in OUT/<name>)."""
    for name, color, seed in (("day1/x.mp4", "red", 0), ("day2/y.mp4", "green", 1), ("in/a/x.mp4", "blue", 2),
                              ("in/b/z.mp4", "checker", 3)):
        make_video(tmp_path / name, [(color, 1.0)], seed=seed)
    out = tmp_path / "out"
    batch(tmp_path / "day1", "-o", out, "--model", tiny_model, "-f", "srt", "-q")
    result = batch(tmp_path / "day2", "-o", out, "--model", tiny_model, "-f", "srt")
    assert "note:" not in result.stderr and "gone" not in read_report(out / REPORT_NAME)
    both = tmp_path / "both"
    batch(tmp_path / "in" / "a", tmp_path / "in" / "b", "-o", both, "--model", tiny_model, "-f", "srt,json", "-q")
    moved = (tmp_path / "in").rename(tmp_path / "moved")
    result = batch(moved / "b", moved / "a", "-o", both, "--model", tiny_model, "-f", "srt,json")
    assert result.exit_code == 0 and "note: 2 JSON outputs now name where their videos are" in result.stderr
    assert {r["status"] for r in read_report(both / REPORT_NAME)["videos"]} == {"skipped"}
    assert "gone" not in read_report(both / REPORT_NAME)
    assert read_output(both / "a" / "x.json")[0] == str(moved / "a" / "x.mp4")


def test_a_video_is_not_taken_for_another_whose_outputs_have_its_name(tmp_path, tiny_model):
    """``batch day1 -o OUT`` then ``batch day2 -o OUT``, both with an a.mp4: day2's was "up to date" with day1's
    captions and its JSON repointed to day2 (search then answered with day1's pictures for day2's video). It fails
    in one line now, day1's outputs untouched. An a.mp4 deleted and an older, other a.mkv added took a.mp4's
    captions the same way; the same video renamed (a.mp4 -> a.mkv) is still up to date."""
    make_video(tmp_path / "day2" / "a.mp4", [("green", 1.0)], seed=1)
    make_video(tmp_path / "day1" / "a.mp4", [("red", 1.0)], seed=0)
    os.utime(tmp_path / "day2" / "a.mp4", (1e9, 1e9))  # older than every output
    out = tmp_path / "out"
    batch(tmp_path / "day1", "-o", out, "--model", tiny_model, "-f", "srt,json", "-q")
    before = (out / "a.srt").read_bytes(), (out / "a.json").read_bytes()
    result = batch(tmp_path / "day2", "-o", out, "--model", tiny_model, "-f", "srt,json")
    assert result.exit_code == 1 and "note:" not in result.stderr
    assert f"day2/a.mp4: its outputs would replace those of {tmp_path / 'day1' / 'a.mp4'}" in result.stderr
    assert ((out / "a.srt").read_bytes(), (out / "a.json").read_bytes()) == before
    assert by_name(read_report(out / REPORT_NAME))["a.mp4"]["status"] == "failed"
    # and on every run: the report keeps day1's record ("earlier"), which the refused run dropped, so the next run
    # took day1's captions for day2's after all, and then refused day1 its own
    result = batch(tmp_path / "day2", "-o", out, "--model", tiny_model, "-f", "srt,json")
    assert result.exit_code == 1 and "its outputs would replace those of" in result.stderr
    assert [e["path"] for e in read_report(out / REPORT_NAME)["earlier"]] == [str(tmp_path / "day1" / "a.mp4")]
    result = batch(tmp_path / "day1", "-o", out, "--model", tiny_model, "-f", "srt,json")
    assert result.exit_code == 0 and "0 captioned, 1 up to date" in result.stderr and "note:" not in result.stderr
    make_video(tmp_path / "day3" / "b.mp4", [("blue", 1.0)], seed=2)  # a third folder with no clash in between
    assert batch(tmp_path / "day3", "-o", out, "--model", tiny_model, "-f", "srt,json", "-q").exit_code == 0
    assert batch(tmp_path / "day2", "-o", out, "--model", tiny_model, "-f", "srt,json", "-q").exit_code == 1
    assert ((out / "a.srt").read_bytes(), (out / "a.json").read_bytes()) == before
    # a video with a record of its own whose output name comes back to the other's: day2's a.mp4 and a.mkv wrote
    # a.mp4.* and a.mkv.*; a.mkv deleted, a.mp4's outputs are a.* again, and day1's were written over
    make_video(tmp_path / "day2" / "a.mkv", [("blue", 1.0)], seed=3)
    assert batch(tmp_path / "day2", "-o", out, "--model", tiny_model, "-f", "srt,json", "-q").exit_code == 0
    (tmp_path / "day2" / "a.mkv").unlink()
    result = batch(tmp_path / "day2", "-o", out, "--model", tiny_model, "-f", "srt,json")
    assert result.exit_code == 1 and "its outputs would replace those of" in result.stderr
    assert ((out / "a.srt").read_bytes(), (out / "a.json").read_bytes()) == before
    result = batch(tmp_path / "day2", "-o", out, "--model", tiny_model, "-f", "srt,json", "--overwrite")
    assert result.exit_code == 0 and read_output(out / "a.json")[0] == str(tmp_path / "day2" / "a.mp4")  # as asked

    tree = tmp_path / "g"
    make_video(tree / "a.mp4", [("red", 1.0)], seed=0)
    batch(tree, "--model", tiny_model, "-f", "srt,json", "-q")
    (tree / "a.mp4").unlink()
    make_video(tree / "a.mkv", [("green", 2.0)], seed=1)
    os.utime(tree / "a.mkv", (1e9, 1e9))
    result = batch(tree, "--model", tiny_model, "-f", "srt,json")
    assert result.exit_code == 0 and by_name(read_report(tree / REPORT_NAME))["a.mkv"]["status"] == "ok"
    assert read_output(tree / "a.json")[0] == str(tree / "a.mkv")
    assert max(c.end for c in srt.parse((tree / "a.srt").read_text())).total_seconds() == 2.0  # the 2 s one's

    (tree / "a.mkv").rename(tree / "a.webm")
    result = batch(tree, "--model", tiny_model, "-f", "srt,json")
    assert result.exit_code == 0 and by_name(read_report(tree / REPORT_NAME))["a.webm"]["status"] == "skipped"
    assert read_output(tree / "a.json")[0] == str(tree / "a.webm")


def test_a_report_of_a_sub_folder_batched_before_is_read_not_ignored(tmp_path, tiny_model):
    """``batch archive/sub`` then ``batch archive``: sub's report was counted as an ignored non-video file on every
    run, and its records unread, so a video there replaced by an older file (``cp -p``) kept the old captions."""
    make_video(tmp_path / "archive" / "a.mp4", [("red", 1.0)], seed=0)
    make_video(tmp_path / "archive" / "sub" / "b.mp4", [("green", 1.0)], seed=1)
    batch(tmp_path / "archive" / "sub", "--model", tiny_model, "-f", "srt", "-q")
    make_video(tmp_path / "older.mp4", [("blue", 2.0)], seed=2)
    os.utime(tmp_path / "older.mp4", (1e9, 1e9))
    (tmp_path / "older.mp4").replace(tmp_path / "archive" / "sub" / "b.mp4")
    result = batch(tmp_path / "archive", "--model", tiny_model, "-f", "srt")
    assert result.exit_code == 0 and "2 captioned, 0 up to date, 0 failed, 0 non-video" in result.stderr
    assert max(c.end for c in srt.parse((tmp_path / "archive" / "sub" / "b.srt").read_text())).total_seconds() == 2.0


def test_outputs_a_video_of_this_run_moved_from_and_copies_are_no_other_videos(tmp_path, tiny_model):
    """Two cases the rule above must not refuse: ``batch archive/2023 -o OUT`` then ``batch archive -o OUT`` moves
    2023's outputs to OUT/2023, its record still listing OUT/a.srt (archive/a.mp4 was refused on every run); a video
    copied with its times (``cp -p``) into a folder whose earlier report was read is its original's copy, up to date."""
    make_video(tmp_path / "archive" / "2023" / "a.mp4", [("red", 1.0)], seed=0)
    out = tmp_path / "out"
    batch(tmp_path / "archive" / "2023", "-o", out, "--model", tiny_model, "-q")
    make_video(tmp_path / "archive" / "a.mp4", [("green", 1.0)], seed=1)
    for _ in range(2):
        result = batch(tmp_path / "archive", "-o", out, "--model", tiny_model)
        assert result.exit_code == 0, result.stderr
    assert (out / "2023" / "a.srt").is_file() and by_name(read_report(out / REPORT_NAME))["a.mp4"]["status"] in (
        "ok", "skipped")

    make_video(tmp_path / "incoming" / "b.mp4", [("blue", 1.0)], seed=2)
    batch(tmp_path / "incoming", "-o", tmp_path / "store" / "2023", "--model", tiny_model, "-q")
    shutil.copy2(tmp_path / "incoming" / "b.mp4", tmp_path / "store" / "2023" / "b.mp4")
    result = batch(tmp_path / "store", "--model", tiny_model)
    assert result.exit_code == 0 and "0 captioned, 1 up to date" in result.stderr


def test_of_a_folder_and_its_sub_folder_the_newer_report_is_believed(tmp_path, tiny_model):
    """A sub-folder's report newer than the record of the folder above (the sub-folder batched alone since) was
    passed over: a video put back there (``cp -p``) kept the captions of the one it had replaced."""
    make_video(tmp_path / "red.mp4", [("red", 1.0)], seed=0)
    make_video(tmp_path / "blue.mp4", [("blue", 2.0)], seed=1)
    sub = tmp_path / "archive" / "2023"
    sub.mkdir(parents=True)
    shutil.copy2(tmp_path / "red.mp4", sub / "a.mp4")
    batch(sub, "--model", tiny_model, "-q")
    batch(tmp_path / "archive", "--model", tiny_model, "-q")
    time.sleep(0.05)
    shutil.copy(tmp_path / "blue.mp4", sub / "a.mp4")
    batch(sub, "--model", tiny_model, "-q")
    shutil.copy2(tmp_path / "red.mp4", sub / "a.mp4")
    result = batch(tmp_path / "archive", "--model", tiny_model)
    assert result.exit_code == 0 and "1 captioned" in result.stderr
    assert max(c.end for c in srt.parse((sub / "a.srt").read_text())).total_seconds() == 1.0  # the red one's
    (sub / "elsewhere").mkdir()
    os.mkfifo(sub / "elsewhere" / REPORT_NAME)
    assert batch(tmp_path / "archive", "--model", tiny_model, "-q").exit_code == 0  # a FIFO of that name: not read
    (tmp_path / "archive" / REPORT_NAME).unlink()
    os.mkfifo(tmp_path / "archive" / REPORT_NAME)  # the batch's own report: read as none (it waited for ever), replaced
    assert batch(tmp_path / "archive", "--model", tiny_model, "-q").exit_code == 0
    assert (tmp_path / "archive" / REPORT_NAME).is_file()


def test_a_video_of_the_same_name_beside_renames_the_outputs_not_captions_again(tmp_path, tiny_model):
    """clip.mkv put beside a captioned clip.mp4: the .mp4 was captioned again as clip.mp4.srt and its clip.srt was left,
    which a player opening clip.mkv showed with it (and search found twice). Its outputs are renamed, and back when
    the .mkv goes."""
    tree = tmp_path / "in"
    make_video(tree / "a.mp4", [("red", 1.0)], seed=0)
    batch(tree, "--model", tiny_model, "-f", "srt,json", "-q")
    first = (tree / "a.srt").read_bytes(), (tree / "a.json").read_bytes()
    make_video(tree / "a.mkv", [("green", 2.0)], seed=1)
    result = batch(tree, "--model", tiny_model, "-f", "srt,json")
    assert result.exit_code == 0 and "1 captioned, 1 up to date" in result.stderr
    assert "note: 2 outputs renamed: a video of the same name came or went beside theirs" in result.stderr
    assert ((tree / "a.mp4.srt").read_bytes(), (tree / "a.mp4.json").read_bytes()) == first
    assert not (tree / "a.srt").exists() and not (tree / "a.json").exists() and (tree / "a.mkv.srt").is_file()
    rows = by_name(read_report(tree / REPORT_NAME))
    assert rows["a.mp4"]["source"]["outputs"] == [str(tree / "a.mp4.srt"), str(tree / "a.mp4.json")]
    (tree / "a.mkv").unlink()
    result = batch(tree, "--model", tiny_model, "-f", "srt,json")
    assert result.exit_code == 0 and "0 captioned, 1 up to date" in result.stderr
    assert "note: 2 outputs renamed" in result.stderr
    assert ((tree / "a.srt").read_bytes(), (tree / "a.json").read_bytes()) == first
    # a video changed meanwhile is captioned again, its old outputs not renamed over
    make_video(tree / "a.mkv", [("green", 2.0)], seed=1)
    make_video(tree / "a.mp4", [("blue", 2.0)], seed=2)
    result = batch(tree, "--model", tiny_model, "-f", "srt,json")
    assert result.exit_code == 0 and "2 captioned" in result.stderr and "renamed" not in result.stderr


def test_a_failed_videos_line_names_it_as_it_is_once(tmp_path, tiny_model):
    """"holiday  2019.mp4" (two spaces) failed as "error: d/holiday 2019.mp4: /abs/d/holiday 2019.mp4: not a video
    ...": a file that is not there, twice (the reason kept its path once the spaces were evened out)."""
    tree = tmp_path / "d"
    tree.mkdir()
    for name in ("holiday  2019.mp4", "x\ny.mp4"):
        (tree / name).write_bytes(b"junk")
    result = batch(tree, "--model", tiny_model)
    errors = sorted(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert errors == [f"error: {tree}/holiday  2019.mp4: not a video file or unsupported codec",
                      f"error: {tree}/x\\ny.mp4: not a video file or unsupported codec"]
    reasons = {r["reason"] for r in read_report(tree / REPORT_NAME)["videos"]}
    assert reasons == {"not a video file or unsupported codec"}


def test_a_moved_archive_whose_video_got_a_same_name_sibling_has_its_renamed_json_repointed(tmp_path, tiny_model):
    """The archive moved and clip.mkv came beside clip.mp4 in one step: the renamed clip.mp4.json kept the old path
    for good (search answered with a file that is not there)."""
    make_video(tmp_path / "t1" / "d" / "clip.mp4", [("red", 1.0)], seed=0)
    batch(tmp_path / "t1" / "d", "-o", tmp_path / "t1" / "out", "--model", tiny_model, "-f", "json,srt", "-q")
    moved = (tmp_path / "t1").rename(tmp_path / "t2")
    make_video(moved / "d" / "clip.mkv", [("green", 1.0)], seed=1)
    result = batch(moved / "d", "-o", moved / "out", "--model", tiny_model, "-f", "json,srt")
    assert result.exit_code == 0 and "renamed" in result.stderr and "now names where its video is" in result.stderr
    assert read_output(moved / "out" / "clip.mp4.json")[0] == str(moved / "d" / "clip.mp4")


def test_a_fifo_named_like_the_index_does_not_hang_the_batch(tmp_path, tiny_model):
    """A FIFO named index.html in the output folder: the batch waited for a writer for ever (SIGTERM held off too)."""
    make_video(tmp_path / "d" / "a.mp4", [("red", 1.0)], seed=0)
    (tmp_path / "out").mkdir()
    os.mkfifo(tmp_path / "out" / "index.html")
    result = batch(tmp_path / "d", "-o", tmp_path / "out", "--model", tiny_model, "-f", "srt,html")
    assert result.exit_code == 0 and (tmp_path / "out" / "captioner-index.html").is_file()


def test_an_output_folder_moved_alone_keeps_its_videos_up_to_date(tmp_path, tiny_model):
    """mv OUT OUT2 (the videos left where they are): every video was captioned again, the report's records naming
    outputs in OUT, and one corrected by hand then failed on every run ("exists and captioner did not write it")."""
    make_video(tmp_path / "d" / "x.mp4", [("red", 1.0)], seed=0)
    make_video(tmp_path / "d" / "y.mp4", [("green", 1.0)], seed=1)
    batch(tmp_path / "d", "-o", tmp_path / "out", "--model", tiny_model, "-f", "srt,json", "-q")
    moved = (tmp_path / "out").rename(tmp_path / "out2")
    text = (moved / "x.srt").read_text(encoding="utf-8")
    (moved / "x.srt").write_text(text.rstrip("\n") + " Corrected By Hand\n", encoding="utf-8")
    result = batch(tmp_path / "d", "-o", moved, "--model", tiny_model, "-f", "srt,json")
    assert result.exit_code == 0 and "0 captioned, 2 up to date" in result.stderr, result.stderr
    assert "Corrected By Hand" in (moved / "x.srt").read_text(encoding="utf-8")


def test_a_folder_given_twice_through_a_link_is_captioned_once(tmp_path, tiny_model):
    """``batch s1 s1-link`` captioned each video twice, the second root's report written over the first's; a
    sub-folder reached through a link (``batch s1 s1-link/sub``) the same."""
    make_video(tmp_path / "s1" / "a.mp4", [("red", 1.0)], seed=0)
    make_video(tmp_path / "s1" / "sub" / "b.mp4", [("green", 1.0)], seed=1)
    (tmp_path / "s1-link").symlink_to(tmp_path / "s1")
    for second in (tmp_path / "s1-link", tmp_path / "s1-link" / "sub"):
        result = batch(tmp_path / "s1", second, "--model", tiny_model, "-f", "srt", "--overwrite")
        assert result.exit_code == 0 and result.stderr.count("2 captioned") == 1, result.stderr
        assert {r["path"] for r in read_report(tmp_path / "s1" / REPORT_NAME)["videos"]} == {
            str(tmp_path / "s1" / "a.mp4"), str(tmp_path / "s1" / "sub" / "b.mp4")}


def test_a_json_names_its_video_after_a_move_inside_the_archive_or_a_new_format(tmp_path, tiny_model):
    """Only a skipped video found through a moved report had its JSON changed: a video in a sub-folder moved inside
    the archive (no record at its new path), and one captioned again for another format after a move (the JSON not
    asked for), kept naming the old path on every later run."""
    tree = tmp_path / "in"
    make_video(tree / "2023" / "x.mp4", [("red", 1.0)], seed=0)
    make_video(tree / "y.mp4", [("green", 1.0)], seed=1)
    batch(tree, "--model", tiny_model, "-f", "srt,json", "-q")
    (tree / "old").mkdir()
    (tree / "2023").rename(tree / "old" / "2023")
    assert batch(tree, "--model", tiny_model, "-f", "srt,json", "-q").exit_code == 0
    assert read_output(tree / "old" / "2023" / "x.json")[0] == str(tree / "old" / "2023" / "x.mp4")
    moved = tree.rename(tmp_path / "moved")
    assert batch(moved, "--model", tiny_model, "-f", "srt,vtt", "-q").exit_code == 0  # y captioned again, for .vtt
    assert read_output(moved / "y.json")[0] == str(moved / "y.mp4")


def test_a_json_another_tool_saved_with_nan_does_not_stop_the_batch(tmp_path, tiny_model):
    """A JSON holding NaN (Python's json.dump writes it) of a skipped video in a moved archive ended every later batch
    in a traceback, before the report: new videos were never captioned. It is left as it is."""
    tree = tmp_path / "in"
    make_video(tree / "x.mp4", [("red", 1.0)], seed=0)
    batch(tree, "--model", tiny_model, "-f", "srt,json", "-q")
    text = (tree / "x.json").read_text()
    (tree / "x.json").write_text(text.replace('"confidence": ', '"confidence": NaN, "was": ', 1))
    moved = tree.rename(tmp_path / "moved")
    make_video(moved / "new.mp4", [("green", 1.0)], seed=1)
    result = batch(moved, "--model", tiny_model, "-f", "srt,json", "-q")
    assert result.exit_code == 0 and result.stderr == ""
    assert {n: r["status"] for n, r in by_name(read_report(moved / REPORT_NAME)).items()} == {"x.mp4": "skipped",
                                                                                            "new.mp4": "ok"}
    assert "NaN" in (moved / "x.json").read_text()


def test_a_gone_video_is_named_once_and_its_outputs_are_not_ignored_files(tmp_path, tiny_model):
    """Nested input folders counted one deleted video twice (it is in both reports); its outputs beside it were also
    counted as non-video files ignored. A video replaced by a folder of its name is gone too."""
    tree = tmp_path / "in"
    make_video(tree / "x.mp4", [("red", 1.0)], seed=0)
    make_video(tree / "sub" / "y.mp4", [("green", 1.0)], seed=1)
    batch(tree / "sub", "--model", tiny_model, "-f", "srt", "-q")
    batch(tree, "--model", tiny_model, "-f", "srt", "-q")
    (tree / "sub" / "y.mp4").unlink()
    result = batch(tree, tree / "sub", "--model", tiny_model, "-f", "srt")
    assert "note: 1 video captioned before is no longer there" in result.stderr
    assert "0 non-video file(s) ignored" in result.stderr
    (tree / "x.mp4").unlink()
    (tree / "x.mp4").mkdir()
    result = batch(tree, "--model", tiny_model, "-f", "srt")
    assert "note: 2 videos captioned before are no longer there" in result.stderr


def test_outputs_of_a_replaced_video_are_not_kept_by_a_later_format_or_a_failed_run(tmp_path, tiny_model):
    """The report recorded one (size, time) a video: after the video was replaced, a run with another -f wrote the
    new .json and recorded the new file, and the next -f srt run kept the old video's .srt as up to date. A replacement
    that failed (or was left pending) recorded nothing, so the run after fell back to file times and took a bad copy
    dated before the outputs (cp -p) as captioned, for good."""
    tree = tmp_path / "in"
    make_video(tree / "a.mp4", [("red", 1.0)], seed=0)
    make_video(tmp_path / "other.mp4", [("checker", 1.0), ("blue", 1.0)], seed=2)
    status = lambda: by_name(read_report(tree / REPORT_NAME))["a.mp4"]["status"]  # noqa: E731
    duration = lambda f: json.loads((tree / f"a.{f}").read_text())["metadata"]["video"]["duration"]  # noqa: E731
    batch(tree, "--model", tiny_model, "-f", "srt,vtt", "-q")
    first_srt = (tree / "a.srt").read_text()
    (tree / "a.mp4").write_bytes((tmp_path / "other.mp4").read_bytes())
    batch(tree, "--model", tiny_model, "-f", "json", "-q")
    assert status() == "ok" and duration("json") == 2.0
    # its .srt and .vtt, made from the old file, were written again with it (were left describing the old picture)
    assert by_name(read_report(tree / REPORT_NAME))["a.mp4"]["outputs"] == [str(tree / f"a.{f}") for f in
                                                                           ("json", "srt", "vtt")]
    assert (tree / "a.srt").read_text() != first_srt
    batch(tree, "--model", tiny_model, "-f", "srt", "-q")
    assert status() == "skipped"  # made from the new file (was: the old video's captions kept as up to date)
    batch(tree, "--model", tiny_model, "-f", "srt,json,vtt", "-q")
    assert status() == "skipped"

    old = (tree / "a.srt").stat().st_mtime - 3600
    (tree / "a.mp4").write_bytes(b"not a video at all")  # a bad copy, dated before the outputs
    os.utime(tree / "a.mp4", (old, old))
    batch(tree, "--model", tiny_model, "-f", "srt", "-q")
    assert status() == "failed"
    batch(tree, "--model", tiny_model, "-f", "srt", "-q")
    assert status() == "failed"  # was "skipped": captions of the file before it, kept from then on
    report = by_name(read_report(tree / REPORT_NAME))["a.mp4"]
    assert report["source"]["size"] == (tmp_path / "other.mp4").stat().st_size  # what a.srt still describes


def test_a_replaced_videos_other_outputs_are_written_again_not_left_stale(tmp_path, tiny_model):
    """A replaced video captioned again for -f srt kept its .json (and review page) from the old file: search answered
    the old picture's captions for the new video. Outputs captioner made from an older file of the video are written
    again with the asked ones; a correction by hand is not; without a record, an output older than the video is."""
    tree = tmp_path / "in"
    make_video(tree / "a.mp4", [("red", 1.0)], seed=0)
    make_video(tree / "b.mp4", [("green", 1.0)], seed=1)
    make_video(tmp_path / "other.mp4", [("checker", 1.0), ("blue", 1.0)], seed=2)
    batch(tree, "--model", tiny_model, "-f", "srt,json,txt", "-q")
    (tree / "a.txt").write_text("A red screen, checked by hand.\n")
    for name in ("a.mp4", "b.mp4"):
        (tree / name).write_bytes((tmp_path / "other.mp4").read_bytes())
    (tree / REPORT_NAME).unlink()  # b: no record, its outputs older than the video
    batch(tree, "--model", tiny_model, "-f", "srt", "-q")
    for name in ("a", "b"):
        assert read_output(tree / f"{name}.json")[0] == str(tree / f"{name}.mp4")
        assert json.loads((tree / f"{name}.json").read_text())["metadata"]["video"]["duration"] == 2.0
    assert (tree / "a.txt").read_text() == "A red screen, checked by hand.\n"
    assert (tree / "b.txt").stat().st_mtime_ns >= (tree / "b.mp4").stat().st_mtime_ns  # written again


def test_the_archive_index_follows_review_pages_written_again_without_html(tmp_path, tiny_model):
    """A replaced video captioned again for -f srt has its review page written again (the test above), but the archive
    index kept the old picture's captions and times until the next batch with html. It is written again too, linking
    the other videos' pages from their earlier run."""
    from captioner.review import _own_page, read_page_data

    tree = tmp_path / "in"
    make_video(tree / "a.mp4", [("red", 1.0)], seed=0)
    make_video(tree / "b.mp4", [("green", 1.0)], seed=1)
    make_video(tmp_path / "other.mp4", [("checker", 1.0), ("blue", 1.0), ("red", 1.0)], seed=2)
    batch(tree, "--model", tiny_model, "-f", "srt,html", "-q")
    (tree / "a.mp4").write_bytes((tmp_path / "other.mp4").read_bytes())
    result = batch(tree, "--model", tiny_model, "-f", "srt", "-q")
    assert result.exit_code == 0, result.output
    videos = {v["name"]: v for v in _own_page(tree / "index.html")[2]["videos"]}
    page = read_page_data(tree / "a.html")
    assert page["video"]["duration"] == 3.0
    assert videos["a.mp4"]["captions"] == [[c["start"], c["text"]] for c in page["cues"]]
    assert videos["b.mp4"]["href"] == "b.html"  # not captioned again: its page of the first run


@pytest.mark.parametrize("mode", [0, 0o311])  # 311: entered, not listed (a share's ACL): its files can be looked at
def test_videos_in_a_folder_that_cannot_be_listed_are_not_gone_and_keep_their_records(tmp_path, tiny_model, as_a_user,
                                                                                       mode):
    """A sub-folder made unreadable (permissions, a share's ACL) made its videos "no longer there (deleted or
    renamed)" and dropped their records: readable again, a replacement dated older (cp -p) was taken as captioned."""
    tree, out = tmp_path / "in", tmp_path / "out"
    make_video(tree / "a.mp4", [("red", 1.0)], seed=0)
    make_video(tree / "day1" / "b.mp4", [("blue", 1.0)], seed=1)
    make_video(tmp_path / "other.mp4", [("checker", 1.0), ("green", 1.0)], seed=2)
    batch(tree, "-o", out, "--model", tiny_model, "-q")
    os.chmod(tree / "day1", mode)
    try:
        result = batch(tree, "-o", out, "--model", tiny_model)
        again = batch(tree, "-o", out, "--model", tiny_model)  # a second run while it still cannot be listed
    finally:
        os.chmod(tree / "day1", 0o755)
    assert "cannot list folder" in result.output and "no longer there" not in result.output + again.output
    assert "gone" not in read_report(out / REPORT_NAME)
    old = (tree / "day1" / "b.mp4").stat().st_mtime - 3600
    (tree / "day1" / "b.mp4").write_bytes((tmp_path / "other.mp4").read_bytes())
    os.utime(tree / "day1" / "b.mp4", (old, old))  # cp -p of a file older than the outputs
    assert batch(tree, "-o", out, "--model", tiny_model, "-q").exit_code == 0
    assert by_name(read_report(out / REPORT_NAME))["b.mp4"]["status"] == "ok"


def test_outputs_renamed_to_a_name_too_long_are_not_reported_up_to_date(tmp_path, tiny_model):
    """A same-name sibling (a.avi beside a captioned a.mp4) renames a.srt to a.mp4.srt; for a 249-letter name that
    is over 255 bytes: the rename failed with a warning and the report said "up to date (renamed)", listing a file
    that did not exist. It fails before captioning, as a name too long does."""
    tree, stem = tmp_path / "in", "y" * 249
    make_video(tree / f"{stem}.mp4", [("red", 1.0)])
    batch(tree, "--model", tiny_model, "-q")
    make_video(tree / f"{stem}.avi", [("blue", 1.0)])
    batch(tree, "--model", tiny_model, "-q")
    rows = by_name(read_report(tree / REPORT_NAME))
    assert rows[f"{stem}.mp4"]["status"] == "failed" and "file name too long" in rows[f"{stem}.mp4"]["reason"]
    assert all(os.path.exists(o) for row in rows.values() for o in row["outputs"])


def test_a_file_where_an_output_sub_folder_goes_is_named_as_in_the_way(tmp_path, tiny_model):
    """out/2023 a file where batch in -o out mirrors in/2023: the reason said "cannot write there (read-only or not
    permitted)" of a folder that could be written."""
    make_video(tmp_path / "in" / "2023" / "clip.mp4", [("red", 1.0)])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "2023").write_text("notes")
    result = batch(tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_model)
    assert result.exit_code == 1 and f"{tmp_path / 'out' / '2023'}: a file is in the way" in result.output, result.output


def test_a_dangling_link_is_worded_as_run_words_it(tmp_path, tiny_model):
    """batch said "FileNotFoundError: [Errno 2] No such file or directory: '/abs/...'" (run: "no such file")."""
    tree = tmp_path / "in"
    make_video(tree / "a.mp4", [("red", 1.0)])
    (tree / "gone.mp4").symlink_to("nowhere.mp4")
    result = batch(tree, "--model", tiny_model, "-q")
    assert result.exit_code == 1 and result.output == f"error: {tree / 'gone.mp4'}: no such file\n"
    assert by_name(read_report(tree / REPORT_NAME))["gone.mp4"]["reason"] == "no such file"


def test_videos_in_an_output_folder_inside_the_input_folder_are_captioned(tmp_path, tiny_model):
    """batch d -o d/x left out d/x entirely (to pass over its subtitles): a video the user kept there was skipped
    without a word, missing from the report."""
    tree = tmp_path / "d"
    make_video(tree / "a.mp4", [("red", 1.0)])
    make_video(tree / "x" / "b.mp4", [("blue", 1.0)])
    (tree / "x" / "notes.txt").write_text("the user's")
    result = batch(tree, "-o", tree / "x", "--model", tiny_model)
    assert result.exit_code == 0, result.output
    assert set(by_name(read_report(tree / "x" / REPORT_NAME))) == {"a.mp4", "b.mp4"}
    assert (tree / "x" / "x" / "b.srt").is_file() and " 0 non-video file(s) ignored" in result.output
    again = batch(tree, "-o", tree / "x", "--model", tiny_model)  # its outputs are not taken for anything
    assert "0 captioned, 2 up to date, 0 failed, 0 non-video file(s) ignored" in again.output


def test_a_batch_over_a_folder_and_its_sub_folder_is_not_refused_by_itself(tmp_path, tiny_model):
    """``batch a a/b`` locks both; testing the folders above a/b found its own lock on a and refused."""
    make_video(tmp_path / "a" / "b" / "v.mp4", [("red", 1.0)])
    result = batch(tmp_path / "a", tmp_path / "a" / "b", "--model", tiny_model, "-q")
    assert result.exit_code == 0 and result.output == "" and (tmp_path / "a" / "b" / "v.srt").is_file()


def test_up_to_date_videos_in_a_folder_that_cannot_be_written_are_skipped(tmp_path, tiny_model, monkeypatch):
    """Checking before captioning that the outputs' folder could be written failed videos with nothing to write
    (a captioned archive on a read-only disk)."""
    import captioner.outputs as outputs_mod

    tree = tmp_path / "in"
    make_video(tree / "a.mp4", [("red", 1.0)])
    batch(tree, "--model", tiny_model, "-q")
    real = os.access
    monkeypatch.setattr(outputs_mod.os, "access",
                        lambda path, mode: real(path, mode) and not (Path(path) == tree and mode & os.W_OK))
    result = batch(tree, "--model", tiny_model, "-q")  # (only the check is fooled: the report is still written)
    assert result.exit_code == 0 and result.output == ""  # was "error: in/a.mp4: in: cannot write there ..."
    assert by_name(read_report(tree / REPORT_NAME))["a.mp4"]["status"] == "skipped"


def test_an_output_folder_reached_through_a_link_is_the_same_folder(tmp_path, tiny_model):
    """The report names the outputs made from each video; compared as written, -o out then -o link-to-out
    captioned every video again."""
    make_video(tmp_path / "in" / "a.mp4", [("red", 1.0)])
    batch(tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_model, "-q")
    (tmp_path / "link").symlink_to(tmp_path / "out")
    batch(tmp_path / "in", "-o", tmp_path / "link", "--model", tiny_model, "-q")
    assert by_name(read_report(tmp_path / "out" / REPORT_NAME))["a.mp4"]["status"] == "skipped"


def test_a_name_that_is_not_utf8_keeps_its_resume_record(tmp_path, tiny_model):
    """The report wrote such a name as "?": its record named no file, and file times decided (a replacement dated
    before the outputs kept its old captions)."""
    tree = tmp_path / "in"
    make_video(tree / "a.mp4", [("red", 1.0)])
    video = os.path.join(os.fsencode(tree), b"caf\xe9.mp4")
    os.rename(tree / "a.mp4", video)
    batch(tree, "--model", tiny_model, "-q")
    rows = read_report(tree / REPORT_NAME)["videos"]
    assert [os.fsencode(r["path"]) for r in rows] == [video] and rows[0]["source"]["outputs"]


def test_two_batches_do_not_write_into_one_folder_at_once(tmp_path, tiny_model) -> None:
    """A second batch on the same output folder captioned every video again, took the first's marker for a
    crash, removed its temporary files as stale, and the last to finish wrote the report."""
    from captioner.batch import LOCK_NAME, exclusive
    from captioner.errors import CaptionerError

    make_video(tmp_path / "in" / "a.mp4", [("red", 1.0)])
    out = tmp_path / "out"
    out.mkdir()
    with exclusive([out]):  # as a batch running in another process holds it
        with pytest.raises(CaptionerError, match=r"another captioner batch is writing there \(process \d+\)"):
            with exclusive([out]):
                pass
        result = CliRunner().invoke(main, ["batch", str(tmp_path / "in"), "-o", str(out), "--model", str(tiny_model)])
        assert result.exit_code == 1 and result.output.startswith(f"error: {out.resolve()}: another captioner batch")
        assert not list(out.glob("*.srt"))
    assert not (out / LOCK_NAME).exists()  # removed when the batch ends
    result = CliRunner().invoke(main, ["batch", str(tmp_path / "in"), "-o", str(out), "--model", str(tiny_model)])
    assert result.exit_code == 0 and (out / "a.srt").is_file() and not (out / LOCK_NAME).exists(), result.output


def test_a_batch_is_refused_where_a_batch_on_a_folder_above_or_below_writes(tmp_path, tiny_model) -> None:
    """``batch a`` and ``batch a/b`` (outputs beside the videos) both wrote into ``a/b``: the lock covered exactly
    each one's folder, so each captioned ``a/b``'s videos and removed the other's temporary files as stale."""
    from captioner.batch import LOCK_NAME, exclusive

    tree = tmp_path / "a"
    make_video(tree / "b" / "v.mp4", [("red", 1.0)])
    make_video(tree / "w.mp4", [("blue", 1.0)])
    (tree / "b" / ".v.srt.k3j9x2_a.captioner.tmp").write_text("another batch's file being written")
    with exclusive([tree / "b"]):  # ``batch a/b`` running in another process
        result = CliRunner().invoke(main, ["batch", str(tree), "--model", str(tiny_model)])
        assert result.exit_code == 1, result.output
        assert result.output == (f"error: {(tree / 'b').resolve()}: another captioner batch is writing there "
                                 f"(process {os.getpid()}); wait for it to finish, or give another -o\n")
        assert (tree / "b" / ".v.srt.k3j9x2_a.captioner.tmp").exists() and not list(tree.rglob("*.srt"))
        assert not (tree / LOCK_NAME).exists()
    with exclusive([tree]):  # ``batch a`` running: ``batch a/b`` and a batch into a new folder below it wait too
        for args in ([str(tree / "b")], [str(tree / "b"), "-o", str(tree / "subs")]):
            result = CliRunner().invoke(main, ["batch", *args, "--model", str(tiny_model)])
            assert result.exit_code == 1, result.output
            assert f"another captioner batch is writing into {tree.resolve()} (process {os.getpid()})" in result.output
        assert not (tree / "subs").exists() and not list(tree.rglob("*.srt"))
    (tree / "b" / ".v.srt.k3j9x2_a.captioner.tmp").unlink()
    result = CliRunner().invoke(main, ["batch", str(tree), "--model", str(tiny_model)])
    assert result.exit_code == 0 and (tree / "b" / "v.srt").is_file() and not list(tree.rglob(LOCK_NAME))


def test_the_batch_lock_follows_no_link_and_passes_over_file_systems_without_locks(tmp_path, monkeypatch) -> None:
    import errno
    import fcntl

    from captioner.batch import LOCK_NAME, exclusive

    victim = tmp_path / "victim.txt"
    victim.write_text("precious data")
    (tmp_path / LOCK_NAME).symlink_to(victim)  # its target was truncated and given the process id
    with exclusive([tmp_path]):
        pass
    assert victim.read_text() == "precious data"

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")  # NFS without lockd

    other = tmp_path / "nfs"
    other.mkdir()
    monkeypatch.setattr(fcntl, "flock", no_locks)
    with exclusive([other]):  # was an OSError traceback
        pass


def test_worker_processes_share_the_cpus_whatever_threads_asks(monkeypatch, caplog) -> None:
    import captioner.batch.local as local

    monkeypatch.setattr(local, "usable_cpus", lambda: 2)
    assert local.worker_threads(0, 2) == 1 and local.worker_threads(0, 1) == 2
    with caplog.at_level("WARNING", logger="captioner.batch.local"):
        assert local.worker_threads(8, 2) == 1  # each worker capped only at the CPU count before: 4 threads on 2 CPUs
    assert "--threads 8 with 2 worker processes on 2 CPU(s): using 1 each" in caplog.text
    assert local.worker_threads(1, 2) == 1


def test_a_killed_batchs_marker_is_gone_after_any_finished_rerun(tmp_path, tiny_model) -> None:
    """After kill -9 the marker stayed for good unless the rerun had one worker and videos left to caption."""
    from captioner.batch import MARKER_NAME

    make_video(tmp_path / "in" / "a.mp4", [("red", 1.0)])
    out = tmp_path / "out"
    args = ["batch", str(tmp_path / "in"), "-o", str(out), "--model", str(tiny_model)]
    assert CliRunner().invoke(main, args).exit_code == 0
    (out / MARKER_NAME).write_text(str(tmp_path / "in" / "a.mp4"))  # as a batch killed while captioning it
    result = CliRunner().invoke(main, args + ["--workers", "2"])  # nothing left to caption
    assert result.exit_code == 0 and not (out / MARKER_NAME).exists()


def test_a_refused_plan_leaves_no_empty_output_folder(tmp_path, tiny_model) -> None:
    make_video(tmp_path / "in" / "a.mp4", [("red", 1.0)])
    make_video(tmp_path / "x" / "in" / "b.mp4", [("blue", 1.0)])
    result = CliRunner().invoke(main, ["batch", str(tmp_path / "in"), str(tmp_path / "x" / "in"), "-o",
                                       str(tmp_path / "dup"), "--model", str(tiny_model)])
    assert result.exit_code == 2 and not (tmp_path / "dup").exists()


def test_the_library_batch_writes_the_formats_its_plan_asked_for(tmp_path, tiny_model):
    """plan_batch and run_batch each take formats; run_batch wrote the config's (srt), the plan's json was
    never written, the video was "ok", and every later plan captioned it again."""
    from captioner.batch import plan_batch, run_batch
    from captioner.config import configure

    make_video(tmp_path / "in" / "a.mp4", [("red", 1.0)])
    out = tmp_path / "out"
    plan = plan_batch([tmp_path / "in"], out, ("srt", "json"))
    outcome = run_batch(plan, configure(model_dir=tiny_model, beam_size=1, threads=1))
    assert [r.status for r in outcome.results] == [Status.OK]
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "a.srt", REPORT_NAME]
    assert plan_batch([tmp_path / "in"], out, ("srt", "json")).jobs == []  # up to date now


@pytest.mark.parametrize("one", ["videos", b"videos", Path("videos")])
def test_one_folder_where_a_list_goes_is_refused(tmp_path, one):
    """plan_batch("videos", ...) iterated the string: "v", "i", ..., and "/" itself were planned."""
    from captioner.batch import exclusive, plan_batch

    with pytest.raises(TypeError, match=r"plan_batch takes a list of folders, not one path"):
        plan_batch(one, None, ("srt",))
    with pytest.raises(TypeError, match=r"exclusive takes a list of folders"):
        with exclusive(one):
            pass


def test_workers_that_cannot_start_are_one_line(tmp_path, tiny_model, monkeypatch):
    """No usable /dev/shm (containers) or too few file descriptors: --workers 2 ended in a 40-line traceback."""
    import concurrent.futures

    def no_semaphores(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    for name in ("a", "b"):
        make_video(tmp_path / "in" / f"{name}.mp4", [("red", 1.0)])
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", no_semaphores)
    result = CliRunner().invoke(main, ["batch", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--workers", "2",
                                       "--model", str(tiny_model), "-q"])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == "error: cannot start 2 worker processes (read-only file system): use --workers 1"
    statuses = [v["status"] for v in json.loads((tmp_path / "out" / REPORT_NAME).read_text())["videos"]]
    assert statuses == ["pending", "pending"]


def test_a_full_disk_where_the_lock_goes_is_one_line_and_leaves_no_lock(tmp_path, monkeypatch):
    """A full disk at the batch's start: 'cannot write the output' (read as stdout) and the lock file stayed."""
    import captioner.batch.lock as lock
    from captioner.batch import exclusive
    from captioner.errors import CaptionerError

    class Full:
        def __init__(self, handle):
            self.handle = handle

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def write(self, text):
            raise OSError(28, "No space left on device")

    real_fdopen = lock.os.fdopen
    monkeypatch.setattr(lock.os, "fdopen", lambda *args, **kwargs: Full(real_fdopen(*args, **kwargs)))
    with pytest.raises(CaptionerError, match=r": cannot write \(no space left on device\)$"):
        with exclusive([tmp_path]):
            pass
    monkeypatch.undo()
    assert not (tmp_path / lock.LOCK_NAME).exists()


def test_archive_containers_are_captioned_and_ignored_files_named(tmp_path, tiny_model):
    """A DVD's .VOB, a raw .m2v (and .dv, .mxf, .asf, ... that ``run`` captions) were skipped as 'non-video file(s)
    ignored', a count with no names anywhere."""
    import numpy as np

    from videos import pyav_video

    tree = tmp_path / "arch"
    tree.mkdir()
    images = [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(10)]
    pyav_video(tree / "VTS_01_1.VOB", "mpeg2video", images, container="vob")
    pyav_video(tree / "tape.m2v", "mpeg2video", images, container="mpeg2video")
    (tree / "notes.txt").write_text("not a video")
    out = tmp_path / "out"
    result = batch(tree, "-o", out, "--model", tiny_model, "-f", "json", "-v", ok_codes=(0,))
    assert "2 captioned, 0 up to date, 0 failed, 1 non-video file(s) ignored" in result.stderr
    assert f"{tree / 'notes.txt'}: ignored (not a video file extension)" in result.stderr  # -v names them
    report = read_report(out / REPORT_NAME)
    assert {row["status"] for row in report["videos"]} == {"ok"} and len(report["videos"]) == 2
    assert report["ignored"] == [str(tree / "notes.txt")] and report["totals"]["ignored"] == 1


def test_a_long_ray_start_error_keeps_its_reason():
    """Ray's failure to start was cut to its first 300 characters: a long message lost the reason at its end."""
    from captioner.batch.ray import _ray_start_error

    line = _ray_start_error(None, RuntimeError("Failed to start the GCS at " + "/tmp/ray/session" * 40 +
                                               ": No space left on device"), "")
    assert line.startswith("cannot start Ray: Failed to start the GCS at /tmp/ray/session")
    assert line.endswith(": No space left on device") and len(line) <= 320


def test_an_output_folder_replaced_by_a_file_mid_batch_fails_each_video_in_one_line(tmp_path) -> None:
    """The output folder removed and a file put in its place while a one-worker batch ran: a traceback
    (NotADirectoryError from cleaning up the running-marker's temporary file) ended the batch, the videos after
    it never tried; the others' reason said the folder did not exist."""
    from captioner.batch.local import write_marker
    from captioner.errors import OutputError
    from captioner.outputs import write_atomic

    out = tmp_path / "out"
    out.write_text("x\n", encoding="utf-8")
    write_marker(out / ".captioner-batch-running", tmp_path / "v2.mp4")  # skipped, not raised
    with pytest.raises(OutputError) as caught:
        write_atomic(out / "v2.srt", "1\n")
    assert str(caught.value) == f"{out / 'v2.srt'}: cannot write: {out} is not a folder"
    assert out.read_text(encoding="utf-8") == "x\n"


def test_a_second_ctrl_c_while_the_report_is_written_still_leaves_the_report(tmp_path, monkeypatch, default_sigint):
    """People press Ctrl-C twice: the second, landing while the report was written, removed its temporary file
    and left no report (or an old one), though the README promises one however a batch stops. It is held off
    until the report is written, then delivered."""
    import signal

    import captioner.batch as batch_pkg
    from captioner.batch import FileResult, plan_batch, report as report_mod, run_batch
    from captioner.config import CaptionConfig

    tree, out = tmp_path / "in", tmp_path / "out"
    tree.mkdir()
    (tree / "a.mp4").write_bytes(b"not decoded here")
    plan = plan_batch([tree], out, ["srt"])

    def stopped_engine(jobs, config, *, workers, on_result, marker):
        out.mkdir(exist_ok=True)
        (out / "a.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\na caption\n")
        on_result(FileResult(str(jobs[0].video), Status.OK, "", outputs=(str(out / "a.srt"),), shown=jobs[0].shown))
        raise KeyboardInterrupt  # the first Ctrl-C

    real_write = report_mod.write_atomic

    def write_with_a_second_ctrl_c(path, text):
        signal.raise_signal(signal.SIGINT)
        return real_write(path, text)

    monkeypatch.setattr(batch_pkg, "run_local", stopped_engine)
    monkeypatch.setattr(report_mod, "write_atomic", write_with_a_second_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        run_batch(plan, CaptionConfig())
    assert sorted(p.name for p in out.iterdir()) == ["a.srt", REPORT_NAME]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _cut_in_half(src: Path, dst: Path) -> Path:
    """A recording cut off half-way: captioned, with a warning."""
    data = src.read_bytes()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data[: len(data) // 2])
    return dst


def test_what_workers_log_reaches_the_batch_process_logging(tmp_path, tiny_model):
    """Worker processes wrote their log records to their own stderr: a program calling run_batch(workers=2) with
    its logging sent to a file had the warnings on its terminal (the library never prints) and not in its log;
    the CLI printed a name's newline raw, splitting the line; Ray's actors lost every warning (their stderr
    reaches the driver only with -v), so a damaged video was captioned without the warning the README promises."""
    make_video(tmp_path / "src.avi", [("red", 1.5), ("blue", 1.5)])
    _cut_in_half(tmp_path / "src.avi", tmp_path / "vids" / "cut\noff.avi")
    make_video(tmp_path / "vids" / "ok.mp4", [("green", 1.0)], seed=2)
    script = tmp_path / "lib.py"
    script.write_text(
        "import logging\n"
        "from pathlib import Path\n"
        "if __name__ == '__main__':\n"
        "    logging.basicConfig(filename='app.log', level=logging.WARNING)\n"
        "    from captioner.batch import plan_batch, run_batch\n"
        "    from captioner.config import configure\n"
        "    plan = plan_batch([Path('vids')], Path('subs'), ['srt'])\n"
        f"    out = run_batch(plan, configure(model_dir={str(tiny_model)!r}, beam_size=1), workers=2)\n"
        "    print(sorted(r.status.value for r in out.results))\n")
    done = run_script(script)
    assert done.returncode == 0 and done.stdout == "['ok', 'ok']\n" and done.stderr == "", done.stderr
    logged = (tmp_path / "app.log").read_text()
    assert logged.startswith(f"WARNING:captioner.video:{tmp_path / 'vids' / 'cut'}\noff.avi: decoding stopped after ")
    engines = [("--workers", "2")]
    try:
        import ray  # noqa: F401
        engines.append(("--engine", "ray", "--workers", "2"))
    except ImportError:
        pass
    for i, engine in enumerate(engines):
        result = batch(tmp_path / "vids", "-o", tmp_path / f"out{i}", "--model", tiny_model, "--beam-size", "1",
                       *engine)
        warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
        assert len(warnings) == 1, (engine, result.stderr)
        assert warnings[0].startswith(f"warning: {tmp_path / 'vids' / 'cut'}\\noff.avi: decoding stopped after ")


def test_library_batch_arguments_are_checked_before_any_work(tmp_path, tiny_model):
    """run_batch(workers=-3) ran and wrote "workers": -3 into the report, "2" and 2.5 failed with a TypeError after
    a report of pending videos; plan_batch(formats=()) called every video up to date and wrote nothing, "srt" was
    taken as ('s', 'r', 't')."""
    from captioner.batch import plan_batch, run_batch
    from captioner.config import configure

    make_video(tmp_path / "in" / "a.mp4", [("red", 1.0)])
    for formats in ((), [""], ["srt", "sub"]):
        with pytest.raises(ValueError, match="subtitle format"):
            plan_batch([tmp_path / "in"], tmp_path / "out", formats)
    with pytest.raises(ValueError, match="format names"):
        plan_batch([tmp_path / "in"], tmp_path / "out", [b"srt"])
    assert plan_batch([tmp_path / "in"], tmp_path / "out", "srt, JSON").formats == ("srt", "json")
    plan = plan_batch([tmp_path / "in"], tmp_path / "out", ["srt"])
    config = configure(model_dir=tiny_model, beam_size=1)
    for workers in (-3, 0, True, "2", 2.5):
        with pytest.raises(ValueError, match="workers must be a whole number"):
            run_batch(plan, config, workers=workers)
    assert not (tmp_path / "out").exists()
    assert run_batch(plan, config, workers=1).counts()[Status.OK] == 1


def test_a_killed_batch_leaves_no_warning_from_the_resource_tracker(tmp_path):
    """kill -9 of a batch with --workers 2 left multiprocessing's resource tracker to clean up the pool's semaphores,
    and its UserWarning ("There appear to be 5 leaked semaphore objects ...", with its source path) came on the
    terminal after the shell's prompt."""
    script = tmp_path / "killed.py"
    script.write_text(
        "import multiprocessing, os, signal\n"
        "from captioner.batch.local import _start_resource_tracker\n"
        "_start_resource_tracker()\n"
        "lock = multiprocessing.get_context('spawn').Lock()  # a named semaphore the tracker keeps\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    # the tracker holds the stderr pipe until it has cleaned up: its output is all read here
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == -signal.SIGKILL and done.stderr == ""


def test_a_later_same_name_video_never_takes_another_s_captions(tmp_path, tiny_model):
    """b.mp4.mkv and b.avi captioned, then an older b.mp4 put beside them (cp -p): a version of keep_extensions that
    moved b.mp4.mkv's outputs to b.mp4.mkv.* let batch call b.mp4 up to date with b.mp4.mkv's captions (its JSON
    rewritten to claim them). It must fail, its outputs left to the video that made them."""
    make_video(tmp_path / "in" / "b.mp4.mkv", [("red", 1.0)])
    make_video(tmp_path / "in" / "b.avi", [("blue", 1.0)], seed=1)
    out = tmp_path / "out"
    batch(tmp_path / "in", "-o", out, "--model", tiny_model, "--beam-size", "1", "-f", "srt,json", "-q")
    made = json.loads((out / "b.mp4.json").read_text())["metadata"]["video"]["path"]
    assert made == str(tmp_path / "in" / "b.mp4.mkv")
    later = make_video(tmp_path / "b.mp4", [("checker", 1.0)], seed=2).path
    os.utime(later, (0, 0))
    shutil.copy2(later, tmp_path / "in" / "b.mp4")
    result = batch(tmp_path / "in", "-o", out, "--model", tiny_model, "--beam-size", "1", "-f", "srt,json", "-q")
    assert result.exit_code == 1 and f"{Path('in') / 'b.mp4'}: its subtitles would overwrite those of " \
        f"{tmp_path / 'in' / 'b.mp4.mkv'}" in result.stderr  # as a first run says it (the video is in this run)
    assert by_name(read_report(out / REPORT_NAME))["b.mp4"]["status"] == "failed"
    assert json.loads((out / "b.mp4.json").read_text())["metadata"]["video"]["path"] == made


def test_a_worker_s_traceback_comes_back_with_its_log_line(caplog):
    """-vv showed the traceback of a file's unexpected failure with one worker and none with --workers 2: a worker's
    log lines came back as text, the traceback dropped."""
    import logging

    from captioner.batch.job import FileResult
    from captioner.batch.local import _Held, replay

    held = _Held()
    try:
        1 / 0
    except ZeroDivisionError:
        held.handle(logging.getLogger("captioner.batch.job").makeRecord(
            "captioner.batch.job", logging.DEBUG, "job.py", 1, "%s failed", ("v2.mp4",), sys.exc_info()))
    result = FileResult("v2.mp4", Status.FAILED, "ZeroDivisionError", logged=tuple(held.lines))
    with caplog.at_level(logging.DEBUG, logger="captioner"):
        assert replay(result).logged == ()
    (record,) = [r for r in caplog.records if r.name == "captioner.batch.job"]
    assert record.getMessage() == "v2.mp4 failed"
    text = logging.Formatter().format(record)
    assert text.startswith("v2.mp4 failed\nTraceback (most recent call last):") and "ZeroDivisionError" in text


def test_subtitles_put_beside_a_video_while_it_is_captioned_are_not_replaced(tmp_path, captioner):
    """The check for files captioner did not write ran when the batch was planned only: a film's dialogue
    subtitles saved beside it an hour into the batch (or while `run` captioned it) were replaced, exit 0."""
    from captioner.batch.job import BatchJob, Status, run_job
    from captioner.config import CaptionConfig, OutputConfig

    video = make_video(tmp_path / "film.mp4", [("red", 1.0)]).path
    dialogue = "1\n00:00:00,000 --> 00:00:02,000\nHello, World! This is DIALOGUE.\n"

    class SavedMeanwhile:  # the user saves film.srt while the video is being read
        def caption_video(self, path, progress=None):
            (tmp_path / "film.srt").write_text(dialogue)
            return captioner.caption_video(path, progress=progress)

    config = CaptionConfig(output=OutputConfig(formats=("srt", "json")))
    result = run_job(SavedMeanwhile(), BatchJob(video, tmp_path / "film", "film.mp4", 0), config)
    assert result.status == Status.FAILED and "film.srt: exists and captioner did not write it" in result.reason
    assert (tmp_path / "film.srt").read_text() == dialogue and not (tmp_path / "film.json").exists()
    result = run_job(SavedMeanwhile(), BatchJob(video, tmp_path / "film", "film.mp4", 0, overwrite=True), config)
    assert result.status == Status.OK and "DIALOGUE" not in (tmp_path / "film.srt").read_text()


def test_a_lock_file_the_disk_refuses_is_one_line_naming_the_folder(tmp_path, tiny_model):
    """ulimit -f 0 or a full disk at the lock file: "cannot write the output: File too large" (the words for a
    failed print, no folder named), and the -o folders it had made were left behind."""
    import resource

    from clitools import captioner_command, subprocess_env

    make_video(tmp_path / "in" / "a.mp4", [("red", 1.0)])
    out = tmp_path / "new" / "deeper"
    r = subprocess.run(captioner_command("batch", tmp_path / "in", "-o", out, "--model", tiny_model, "-q"),
                       capture_output=True, text=True, timeout=120, env=subprocess_env(),
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0)))
    assert (r.returncode, r.stderr) == (1, f"error: {out}: cannot write (file too large)\n")
    assert not (tmp_path / "new").exists()


def test_a_video_still_being_written_is_captioned_with_a_warning(tmp_path, captioner, caplog):
    """A recording still being copied in was captioned as far as it had come and reported ok, unsaid."""
    import logging

    from captioner.batch.job import run_job
    from captioner.config import CaptionConfig, OutputConfig

    video = make_video(tmp_path / "rec.mp4", [("red", 1.0)]).path

    class Growing:  # the copy goes on while the video is read
        def caption_video(self, path, progress=None):
            result = captioner.caption_video(path, progress=progress)
            with open(path, "ab") as handle:
                handle.write(b"\0" * 1000)
            return result

    with caplog.at_level(logging.WARNING, logger="captioner"):
        result = run_job(Growing(), BatchJob(video, tmp_path / "rec", "rec.mp4", 0),
                         CaptionConfig(output=OutputConfig(formats=("json",))))
    assert result.status == Status.OK
    assert f"{video}: changed while it was read (still being written?)" in caplog.text


def test_a_library_batch_is_refused_where_another_process_s_batch_writes(tmp_path, tiny_model) -> None:
    """plan_batch + run_batch took no lock: beside a running `captioner batch` into the same folder they captioned
    every video again, took its "captioning" marker for a crash and removed it."""
    from captioner.batch import plan_batch, run_batch
    from captioner.config import configure
    from captioner.errors import CaptionerError
    from clitools import subprocess_env

    make_video(tmp_path / "in" / "a.mp4", [("red", 1.0)])
    out = tmp_path / "out"
    out.mkdir()
    plan = plan_batch([tmp_path / "in"], out, ["srt"])  # planned before the other batch started
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from captioner.batch import exclusive\n"
                               "with exclusive([sys.argv[1]]):\n    print('held', flush=True); time.sleep(60)", str(out)],
                              stdout=subprocess.PIPE, text=True, env=subprocess_env())
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CaptionerError, match=r"another captioner batch is writing there \(process \d+\)"):
            plan_batch([tmp_path / "in"], out, ["srt"])
        with pytest.raises(CaptionerError, match=r"another captioner batch is writing there"):
            run_batch(plan, configure(model_dir=tiny_model))
        assert sorted(p.name for p in out.iterdir()) == [".captioner-batch.lock"]  # nothing of this batch's
    finally:
        holder.kill()
        holder.wait()
    outcome = run_batch(plan_batch([tmp_path / "in"], out, ["srt"]), configure(model_dir=tiny_model))
    assert outcome.counts()[Status.OK] == 1 and (out / "a.srt").is_file()


def test_an_unguarded_one_worker_script_after_a_killed_batch_is_told_why(tmp_path, tiny_model):
    """workers=1 after a batch killed mid-file: the file it was captioning is retried in a process of its own, which
    an unguarded script cannot start; the message said the guard is needed "with workers > 1" only."""
    from captioner.batch.local import MARKER_NAME, write_marker

    make_video(tmp_path / "vids" / "a.mp4", [("red", 1.0)])
    (tmp_path / "subs").mkdir()
    write_marker(tmp_path / "subs" / MARKER_NAME, tmp_path / "vids" / "a.mp4")  # as a batch killed on a.mp4 left it
    script = unguarded_script(tmp_path, tiny_model, workers=1)
    done = run_script(script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].endswith(
        "a script that calls run_batch after a batch that ended while captioning a file (that file is captioned "
        "again in a process of its own) must do so under 'if __name__ == \"__main__\":' (as multiprocessing requires)")


def test_dot_dot_from_a_folder_reached_through_a_symlink_means_what_the_system_means(tmp_path, tiny_model,
                                                                                     monkeypatch):
    """A change of this session took relative paths from $PWD and removed '..' by text: from link/ (-> real/sub)
    `batch ../vids -o ../out` failed every video and wrote its report over another folder's (reverted)."""
    (tmp_path / "real" / "sub").mkdir(parents=True)
    make_video(tmp_path / "real" / "vids" / "a.mp4", [("red", 1.0)])
    (tmp_path / "link").symlink_to(tmp_path / "real" / "sub")
    monkeypatch.chdir(tmp_path / "link")
    monkeypatch.setenv("PWD", str(tmp_path / "link"))
    result = batch("../vids", "-o", "../out", "--model", tiny_model, "-f", "srt,json")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "real" / "out" / "a.srt").is_file() and not (tmp_path / "out").exists()
    data = json.loads((tmp_path / "real" / "out" / "a.json").read_text())
    assert data["metadata"]["video"]["path"] == str(tmp_path / "real" / "vids" / "a.mp4")


def test_a_library_batch_inside_its_callers_lock_on_the_archive_or_some_of_its_folders(tmp_path, tiny_model,
                                                                                      monkeypatch) -> None:
    """run_batch locked its folders again, unless the caller held exactly those: under the caller's exclusive() on
    the archive above them, or on one of two folders, it named its own process as "another batch"."""
    from captioner.batch import exclusive, plan_batch, run_batch
    from captioner.config import configure

    make_video(tmp_path / "v1" / "a.mp4", [("red", 1.0)])
    make_video(tmp_path / "v2" / "b.mp4", [("blue", 1.0)])
    config = configure(model_dir=tiny_model, formats=["srt"])
    with exclusive([tmp_path]) as own:
        outcome = run_batch(plan_batch([tmp_path / "v1"], None, ["srt"], locked=own), config)
    assert outcome.counts()[Status.OK] == 1
    with exclusive([tmp_path / "v1"]) as own:
        outcome = run_batch(plan_batch([tmp_path / "v1", tmp_path / "v2"], None, ["srt"], locked=own), config)
    assert outcome.counts()[Status.OK] == 1 and outcome.counts()[Status.SKIPPED] == 1


def test_plan_batch_with_an_output_folder_given_as_text_says_which_folders_clash(tmp_path):
    """plan_batch(["a/x", "b/x"], "subs"): TypeError "unsupported operand type(s) for /: 'str' and 'str'" in place of
    the ValueError a Path gives (a string works everywhere else)."""
    from captioner.batch import plan_batch

    for name in ("a/x", "b/x"):
        make_video(tmp_path / name / "c.mp4", [("red", 1.0)])
    with pytest.raises(ValueError, match="would share the output folder .*subs/x"):
        plan_batch([tmp_path / "a" / "x", tmp_path / "b" / "x"], str(tmp_path / "subs"), ["srt"])


def test_a_folder_name_with_control_characters_stays_on_its_line(tmp_path):
    """ "no videos found in" and the summary's "report:" printed a folder's newline (and ESC) as they are: the line
    split in two, or the terminal's screen was cleared; every other line escapes them."""
    tree = tmp_path / "em\npty\x1b[2J"
    tree.mkdir()
    lines = batch(tree).stderr.splitlines()
    shown = str(tree).replace("\n", "\\n").replace("\x1b", "\\x1b")
    assert lines[0] == f"no videos found in {shown}" and len(lines) == 2, lines
    assert lines[1].endswith(f"; report: {shown}/{REPORT_NAME}")


def test_a_drive_roots_system_folders_are_not_walked_into(tmp_path, tiny_model, as_a_user):
    """Every ext4 drive's root has a root-only lost+found: a batch of the drive failed on every run ("cannot list
    folder", exit 1) and counted it as a failed video; Windows' System Volume Information and $RECYCLE.BIN alike."""
    tree = tmp_path / "drive"
    make_video(tree / "a.mp4", [("red", 1.0)])
    for name in ("lost+found", "System Volume Information", "$RECYCLE.BIN"):
        (tree / name).mkdir()
        make_video(tree / name / "b.mp4", [("blue", 1.0)])
    os.chmod(tree / "lost+found", 0)  # as root's 700 is to a user
    try:
        result = batch(tree, "--model", tiny_model)
    finally:
        os.chmod(tree / "lost+found", 0o700)
    assert result.exit_code == 0 and "error" not in result.output, result.output
    assert set(by_name(read_report(tree / REPORT_NAME))) == {"a.mp4"}


def test_a_video_whose_outputs_another_video_of_the_run_owns_fails_as_on_a_first_run(tmp_path, tiny_model):
    """clip.mp4 and clip.mp4.mp4 captioned, then a clip.avi came: clip.mp4's outputs became clip.mp4.srt, which
    clip.mp4.mp4 owns. The reason advised batching "both folders" into one run (one folder, one run) or --overwrite,
    which then gave clip.mp4.mp4's JSON to clip.mp4."""
    tree = tmp_path / "in"
    make_video(tree / "clip.mp4", [("red", 1.0)], seed=0)
    make_video(tree / "clip.mp4.mp4", [("blue", 1.0)], seed=1)
    batch(tree, "--model", tiny_model, "-f", "srt,json", "-q")
    make_video(tree / "clip.avi", [("green", 1.0)], seed=2)
    for extra in ((), ("--overwrite",)):
        result = batch(tree, "--model", tiny_model, "-f", "srt,json", *extra)
        assert f"error: {tree / 'clip.mp4'}: its subtitles would overwrite those of {tree / 'clip.mp4.mp4'}" \
            in result.output, result.output
        assert read_output(tree / "clip.mp4.json")[0] == str(tree / "clip.mp4.mp4")


def test_the_index_keeps_the_pages_of_videos_not_walked_or_not_yet_redone(tmp_path, tiny_model):
    """A batch without html that wrote a page again rewrote the index from its own results: with --no-recursive the
    sub-folders' videos left it, and a stopped batch's pending videos lost their links, their pages still there."""
    from captioner.batch import FileResult, plan_batch
    from captioner.batch.report import write_batch_index
    from captioner.review import _own_page

    tree = tmp_path / "in"
    make_video(tree / "a.mp4", [("red", 1.0)], seed=0)
    make_video(tree / "c.mp4", [("green", 1.0)], seed=3)
    make_video(tree / "sub" / "b.mp4", [("blue", 1.0)], seed=1)
    make_video(tmp_path / "other.mp4", [("checker", 1.0), ("blue", 1.0)], seed=2)
    batch(tree, "--model", tiny_model, "-f", "srt,html", "-q")
    (tree / "a.mp4").write_bytes((tmp_path / "other.mp4").read_bytes())
    assert batch(tree, "--model", tiny_model, "-f", "srt", "--no-recursive", "-q").exit_code == 0
    links = {v["name"]: v["href"] for v in _own_page(tree / "index.html")[2]["videos"]}
    assert links == {"a.mp4": "a.html", "c.mp4": "c.html", "sub/b.mp4": "sub/b.html"}, links
    (tree / "sub" / "b.mp4").unlink()  # kept as a record of a video not walked, then deleted: gone, said
    assert "1 video captioned before is no longer there" in batch(tree, "--model", tiny_model, "-f", "srt").output
    plan = plan_batch([tree], None, ["srt"])
    pending = FileResult(str(tree / "c.mp4"), Status.PENDING, "not captioned: the batch stopped first",
                         covers=(str(tree / "c.srt"), str(tree / "c.html")))
    write_batch_index(plan, [*plan.done, pending], [0], tree)
    assert {v["name"]: v["href"] for v in _own_page(tree / "index.html")[2]["videos"]}["c.mp4"] == "c.html"


def test_an_output_folder_moved_alone_keeps_the_other_folders_records_and_repoints_its_pages(tmp_path, tiny_model):
    """day1 and day2 batched into one -o, then `mv subs subs2`: the first run into subs2 dropped day1's records (the
    report's "earlier"), so a day2/a.mp4 then took day1/a.mp4's captions unsaid and the index lost day1's pages; and
    no review page was repointed, each linking its video from where subs was (none played)."""
    from captioner.review import _own_page

    make_video(tmp_path / "day1" / "a.mp4", [("red", 1.0)], seed=0)
    make_video(tmp_path / "day2" / "b.mp4", [("blue", 1.0)], seed=1)
    subs, moved = tmp_path / "subs", tmp_path / "deeper" / "subs2"
    for day in ("day1", "day2"):
        batch(tmp_path / day, "-o", subs, "--model", tiny_model, "-f", "json,html", "-q")
    moved.parent.mkdir()
    subs.rename(moved)
    assert batch(tmp_path / "day2", "-o", moved, "--model", tiny_model, "-f", "json,html", "-q").exit_code == 0
    assert {v["name"] for v in _own_page(moved / "index.html")[2]["videos"]} == {"b.mp4", "day1/a.mp4"}
    assert 'src="../../day2/b.mp4"' in (moved / "b.html").read_text(encoding="utf-8")  # plays from subs2
    assert 'src="../../day1/a.mp4"' in (moved / "a.html").read_text(encoding="utf-8")  # the other folder's too
    make_video(tmp_path / "day2" / "a.mp4", [("checker", 1.0)], seed=2)
    result = batch(tmp_path / "day2", "-o", moved, "--model", tiny_model, "-f", "json,html")
    assert result.exit_code == 1 and "its outputs would replace those of" in result.output, result.output
    assert read_output(moved / "a.json")[0] == str(tmp_path / "day1" / "a.mp4")

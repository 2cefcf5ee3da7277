// captioner review page: seek, follow, edit, save in this browser, download .srt/.vtt.
// Text only ever goes into the page through textContent (never innerHTML).
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("captioner-data").textContent);
  var cues = data.cues;
  var video = document.getElementById("video");
  var list = document.getElementById("cues");
  var rows = Array.prototype.slice.call(list.querySelectorAll("li.cue"));
  var statusLine = document.getElementById("status");
  var discardButton = document.getElementById("discard");
  // one key per captioning of a video: a stretch's page (run --start/--end) keeps its own edits (they were
  // counted as stale on the whole video's page, and Discard there deleted them)
  var storageKey = "captioner.edits:" + (data.model.sha256 || data.model.name || "") + ":" + data.video.path +
    (data.video.captioned ? ":" + data.video.captioned.join("-") : "");
  // this page's folder, as the browser reached it: an edit records where it was made, so that a page of the same
  // video in another folder (another -o, other options: the same key) neither counts it as stale nor discards it.
  // The folder, not the file: batch renames a page beside its video (clip.html -> clip.mp4.html) and it stays itself
  var here = location.pathname.replace(/[^\/]*$/, "");
  var active = -1;
  var onlyCheck = document.getElementById("only-check");
  if (onlyCheck) {
    onlyCheck.checked = false;  // a reload shows every cue again
    onlyCheck.addEventListener("change", function () { list.classList.toggle("only-check", onlyCheck.checked); });
  }
  var edits = loadEdits(), storageWorks = edits !== null;
  if (edits === null) edits = {};

  // ---------------------------------------------------------------- text rules (as subtitles.py)
  // Text is counted and cut in code points, as Python counts it (an emoji is one character, not two
  // UTF-16 units: cut between its halves it became two replacement characters in the download).
  function chars(text) { return Array.from(text); }

  function isSpace(ch) {  // Python's str.isspace(): JS's \s less U+FEFF, plus U+001C-U+001F and U+0085
    return ch !== "\ufeff" && /\s/.test(ch) || /[\u001c-\u001f\u0085]/.test(ch);
  }

  function clean(text) {
    var out = "";
    chars(text).forEach(function (ch) {
      var code = ch.codePointAt(0);
      if (isSpace(ch)) out += " ";
      else if (code < 32 || (code >= 127 && code < 160) || (code >= 0xd800 && code <= 0xdfff)) return;  // Cc, Cs
      else out += ch;
    });
    return out.split(" ").filter(Boolean).join(" ").replace(/-{2,}>/g, "->");
  }

  function wrapPieces(text, width, count) {
    var lines = [], current = "", continues = false;
    text.split(" ").filter(Boolean).forEach(function (word) {
      var letters = chars(word);
      if (current && chars(current).length + 1 + letters.length <= width) { current += " " + word; return; }
      if (current) lines.push([current, continues]);
      var pieces = [];
      for (var i = 0; i < letters.length; i += width) pieces.push(letters.slice(i, i + width).join(""));
      for (var j = 0; j < pieces.length - 1; j++) lines.push([pieces[j], j > 0]);
      current = pieces[pieces.length - 1];
      continues = pieces.length > 1;
    });
    if (current) lines.push([current, continues]);
    if (lines.length > count) {
      var head = lines.slice(0, count - 1), tail = lines.slice(count - 1);
      head.push([joinLines(tail), tail[0][1]]);
      lines = head;
    } else if (lines.length > 1 && !lines.some(function (l) { return l[1]; })) {
      var even = balanceLines(text.split(" ").filter(Boolean), lines.length, width);
      if (even) lines = even.map(function (l) { return [l, false]; });
    }
    return lines;
  }

  // cues.py's balance_lines: lines as even as they can be, none ending on a weak word where another break will do
  var WEAK = {};
  "a an the and or of to in on at with by for from into onto is are his her its their each".split(" ")
    .forEach(function (w) { WEAK[w] = true; });
  function balanceLines(words, count, width) {
    var m = words.length, best = [], cut = [], k, i, j;
    if (count < 1 || m < count) return null;
    for (k = 0; k <= count; k++) { best.push([]); cut.push([]); for (i = 0; i <= m; i++) { best[k].push(Infinity); cut[k].push(0); } }
    best[0][0] = 0;
    for (k = 1; k <= count; k++) {
      for (i = k; i <= m; i++) {
        for (j = k - 1; j < i; j++) {
          if (best[k - 1][j] === Infinity) continue;
          var length = i - j - 1;
          for (var w = j; w < i; w++) length += chars(words[w]).length;
          if (length > width) continue;
          var cost = best[k - 1][j] + length * length + (i < m && WEAK[words[i - 1]] ? 400 : 0);
          if (cost <= best[k][i]) { best[k][i] = cost; cut[k][i] = j; }
        }
      }
    }
    if (best[count][m] === Infinity) return null;
    var out = [];
    for (k = count, i = m; k > 0; k--) { j = cut[k][i]; out.unshift(words.slice(j, i).join(" ")); i = j; }
    return out;
  }

  function joinLines(lines) {
    var joined = lines[0][0];
    for (var i = 1; i < lines.length; i++) joined += lines[i][1] ? lines[i][0] : " " + lines[i][0];
    return joined;
  }

  function srtLines(text) {
    var lines = wrapPieces(text, data.line.width, data.line.count), i = 0;
    while (i < lines.length - 1) {  // a number alone on a line reads as a cue index
      if (/^-?\p{Nd}+(\.\p{Nd}*)?$/u.test(lines[i][0])) lines.splice(i, 2, [joinLines(lines.slice(i, i + 2)), lines[i][1]]);
      else i++;
    }
    return lines.map(function (l) { return l[0]; });
  }

  function stamp(seconds, sep) {
    var ms = Math.round(seconds * 1000);
    var h = Math.floor(ms / 3600000); ms -= h * 3600000;
    var m = Math.floor(ms / 60000); ms -= m * 60000;
    var s = Math.floor(ms / 1000); ms -= s * 1000;
    function pad(n, w) { n = String(n); while (n.length < w) n = "0" + n; return n; }
    return pad(h, 2) + ":" + pad(m, 2) + ":" + pad(s, 2) + sep + pad(ms, 3);
  }

  function vttEscape(text) { return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;"); }

  // ---------------------------------------------------------------- edits (localStorage)
  // an edit's slot: its cue's start (ms) and caption (by the start alone, a page of the video made with other
  // options took this page's slot, unsaid); start-only slots of earlier pages are still found (entryOf)
  var startedAs = {};  // each caption's stored edit when its edit began (a full storage keeps that: onEdit)
  function keyOf(i) { return Math.round(cues[i].start * 1000) + " " + cues[i].text; }

  // the slots of ``within`` (default: the edits) that hold cue i's edit (its own, the older start-only one), and
  // the one shown (the first), or null
  function slotsOf(i, within) {
    var set = within || edits;
    return [keyOf(i), String(Math.round(cues[i].start * 1000))].filter(function (k) {
      return set[k] && set[k].orig === cues[i].text;
    });
  }
  function entryOf(i) { var slots = slotsOf(i); return slots.length ? slots[0] : null; }
  // cue i's stored edit as an edit of it begins: what a storage that fills while typing keeps (onEdit)
  function startOf(i) { var slot = entryOf(i); return {slot: slot, entry: slot === null ? null : edits[slot]}; }

  function loadEdits() {  // null when storage cannot be read (blocked, some private modes)
    try {
      var stored = JSON.parse(localStorage.getItem(storageKey) || "null");
      return stored && stored.version === 1 && stored.edits ? stored.edits : {};
    } catch (e) { return null; }
  }

  function saveEdits() {
    try {
      if (Object.keys(edits).length) localStorage.setItem(storageKey, JSON.stringify({version: 1, edits: edits}));
      else localStorage.removeItem(storageKey);
      return true;
    } catch (e) { return false; }
  }

  // an edit applies only to the cue it was made on (same start, same original caption)
  function editedText(i) {
    var k = entryOf(i);
    return k === null ? null : edits[k].text;
  }

  function textOf(i) { var e = editedText(i); return e === null ? cues[i].text : e; }

  function editCount() {
    var n = 0;
    for (var i = 0; i < cues.length; i++) if (editedText(i) !== null) n++;
    return n;
  }

  // the stored edits this page does not show: of its own captions no longer here (captioned again), and those made
  // on another page of the video, left to it
  function unshown() {
    var shown = {}, out = {stale: [], others: []};
    for (var i = 0; i < cues.length; i++) slotsOf(i).forEach(function (k) { shown[k] = true; });
    Object.keys(edits).forEach(function (k) {
      if (shown[k]) return;
      (edits[k].page && edits[k].page !== here ? out.others : out.stale).push(k);
    });
    return out;
  }

  function refreshStatus(message) {
    var n = editCount(), left = unshown(), stale = left.stale.length, others = left.others.length;
    // edits of captions no longer here (the video was captioned again): said, and Discard removes them
    discardButton.disabled = n + stale === 0;
    disarm();
    var old = (stale ? " " + stale + (stale === 1 ? " earlier edit is" : " earlier edits are") +
      " of captions no longer on this page (captioned again?)." : "") +
      (others ? " " + others + (others === 1 ? " edit was" : " edits were") + " made on another page of this video" +
       " (kept for it)." : "");
    var text = message || (n ? n + (n === 1 ? " caption" : " captions") +
      " edited; saved in this browser. The downloads contain the edits." + old : old.trim());
    // a live region: written only when its sentence changes (not on every keystroke of an edit). The instruction
    // is a line of its own, outside it: put back here whenever the last edit was undone, the whole instruction was
    // read out again over the typing
    if (statusLine.textContent !== text) statusLine.textContent = text;
    statusLine.hidden = !text;
  }

  // the track's cues by their start (ms), made once the track has loaded: a scan of every track cue for each
  // row made redrawing all rows (another tab's edits, the track's load) n-squared on a long film's page
  var trackIndex = null;
  // a browser plays a file on its own timestamps, from data.video.clock_start, where cue times start at 0 (a cut
  // part of a recording showed every caption that much early): every time the video is told or asked is shifted
  var shift = +data.video.clock_start || 0;
  function trackCue(i) {
    if (trackIndex === null) {
      var tracks = video.textTracks, index = null;
      for (var t = 0; t < tracks.length; t++) {
        var list = tracks[t].cues;
        if (!list || !list.length) continue;
        index = index || {};
        for (var c = 0; c < list.length; c++) {
          var key = Math.round((list[c].startTime - shift) * 1000);
          if (!(key in index)) index[key] = list[c];
        }
      }
      if (index === null) return null;
      trackIndex = index;
    }
    return trackIndex[Math.round(cues[i].start * 1000)] || null;
  }

  function showText(i) {
    var row = rows[i], text = textOf(i), node = row.querySelector(".text");
    if (document.activeElement !== node) node.textContent = text;
    row.classList.toggle("edited", editedText(i) !== null);
    // an edit longer than its cue can be read at the speed the cues were laid out for is said beside it (the
    // downloads keep the cue's times: a describer's longer sentence flashed by unread). Counted in code points, as
    // the layout counts; only an edit longer than the model's caption (the layout may let the only caption of a
    // very short video run short); the time held cut down and the need rounded up ("1.8 s (needs 1.8 s)")
    var slow = row.querySelector(".slow-badge"), cps = data.line && data.line.cps, held = cues[i].end - cues[i].start;
    if (slow) {
      var length = chars(clean(text)).length, longer = editedText(i) !== null && length > chars(cues[i].text).length;
      var needs = cps > 0 && longer ? length / cps : 0;
      slow.textContent = needs > held + 0.0005 ? "too long to read in " + (Math.floor(held * 10 + 1e-9) / 10).toFixed(1) +
        " s (needs " + (Math.ceil(needs * 10 - 1e-9) / 10).toFixed(1) + " s)." : "";
    }
    var cue = trackCue(i);
    if (cue) {
      cue.text = vttEscape(wrapPieces(clean(text), data.line.width, data.line.count)
        .map(function (l) { return l[0]; }).join("\n"));
      // a caption emptied here is left out of the downloads: the picture shows no empty subtitle box either
      cue.endTime = (clean(text) ? cues[i].end : cues[i].start) + shift;
    }
  }

  function onEdit(i) {
    // text dropped in comes as lines in elements, which textContent joins ("a red<div>car</div>": "a redcar")
    var node = rows[i].querySelector(".text");
    var text = clean(node.children.length ? node.innerText : node.textContent);
    // what another tab of this page saved since: kept (the whole set was written back, and the last tab won);
    // while storage fails (blocked, full) the edits live in this page only, and none is dropped by a reload
    var stored = storageWorks ? loadEdits() : null;
    if (stored !== null) edits = stored;
    if (startedAs[i] === undefined) startedAs[i] = startOf(i);  // (no focus event came)
    slotsOf(i).forEach(function (k) { delete edits[k]; });  // (an older start-only slot moves to the cue's own)
    if (text !== cues[i].text) edits[keyOf(i)] = {orig: cues[i].text, text: text, page: here};
    var saved = saveEdits();
    if (!saved && startedAs[i] !== undefined) {
      // storage full part-way through typing kept the edit as far as it fit, shown as saved after a reload: it
      // keeps the caption as it was when the edit began instead
      var kept = loadEdits() || {}, was = startedAs[i];
      slotsOf(i, kept).forEach(function (k) { delete kept[k]; });
      if (was.slot !== null) kept[was.slot] = was.entry;  // as it was stored, in its slot: no longer than before
      try { localStorage.setItem(storageKey, JSON.stringify({version: 1, edits: kept})); } catch (e) {
        if (was.slot !== null) delete kept[was.slot];  // not even that fits: the model's caption, never a cut-off one
        try { localStorage.setItem(storageKey, JSON.stringify({version: 1, edits: kept})); } catch (e2) { /* none */ }
      }
    }
    storageWorks = storageWorks && saved;
    rows[i].classList.toggle("edited", editedText(i) !== null);
    showText(i);
    refreshStatus(saved ? null : "This browser does not keep the edits (storage unavailable); download them.");
  }

  // armed until the button loses focus or something else happens (no time limit: a screen reader user
  // hears the question first); a mouse user's two clicks keep the focus on it
  function disarm() {
    if (!discardButton.classList.contains("armed")) return;
    discardButton.classList.remove("armed");
    discardButton.textContent = "Discard edits";
  }
  discardButton.addEventListener("blur", disarm);

  discardButton.addEventListener("click", function () {
    if (!discardButton.classList.contains("armed")) {  // two clicks: no dialog, no accident
      var n = editCount() + unshown().stale.length;
      discardButton.classList.add("armed");
      discardButton.textContent = "Discard " + n + (n === 1 ? " edit?" : " edits?") + " Click again";
      return;
    }
    var stored = storageWorks ? loadEdits() : null;  // another tab's or page's, saved since
    if (stored !== null) edits = stored;
    var keep = {};
    unshown().others.forEach(function (k) { keep[k] = edits[k]; });
    edits = keep;
    saveEdits();
    for (var i = 0; i < rows.length; i++) { rows[i].querySelector(".text").textContent = cues[i].text; showText(i); }
    refreshStatus("Edits discarded: the captions are as the model wrote them.");
    statusLine.focus();  // the button is disabled now: the keyboard goes on from the sentence that says what happened
  });

  // ---------------------------------------------------------------- downloads
  function currentCues() {
    var out = [];
    for (var i = 0; i < cues.length; i++) {
      var text = clean(textOf(i));
      if (text) out.push({start: cues[i].start, end: cues[i].end, text: text});
    }
    return out;
  }

  function buildSrt() {
    return currentCues().map(function (c, n) {
      return (n + 1) + "\n" + stamp(c.start, ",") + " --> " + stamp(c.end, ",") + "\n" + srtLines(c.text).join("\n") + "\n";
    }).join("\n");
  }

  function buildVtt() {
    return ["WEBVTT\n"].concat(currentCues().map(function (c) {
      return stamp(c.start, ".") + " --> " + stamp(c.end, ".") + "\n" +
        wrapPieces(c.text, data.line.width, data.line.count).map(function (l) { return vttEscape(l[0]); }).join("\n") + "\n";
    })).join("\n");
  }

  function download(name, text, type) {
    var url = URL.createObjectURL(new Blob([text], {type: type}));
    var a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
  }

  // A byte-order mark first (players read it; captioner never writes one): a corrected file saved
  // beside the video is then not taken for captioner's own output and replaced by the next run.
  document.getElementById("dl-srt").addEventListener("click", function () {
    download(data.video.stem + ".srt", "\ufeff" + buildSrt(), "application/x-subrip;charset=utf-8");
  });
  document.getElementById("dl-vtt").addEventListener("click", function () {
    download(data.video.stem + ".vtt", "\ufeff" + buildVtt(), "text/vtt;charset=utf-8");
  });

  // ---------------------------------------------------------------- seek and follow
  function cueAt(t) {
    var lo = 0, hi = cues.length - 1;
    while (lo <= hi) {
      var mid = (lo + hi) >> 1;
      if (t < cues[mid].start) hi = mid - 1;
      else if (t >= cues[mid].end) lo = mid + 1;
      else return mid;
    }
    return -1;
  }

  // the keyboard is in the list: a row reached by Tab (a row clicked with the mouse lets the list follow the video)
  function keyboardInList() {
    var el = document.activeElement;
    if (!el || !list.contains(el)) return false;
    try { return el.matches(":focus-visible") || el.classList.contains("text"); } catch (e) { return true; }
  }

  function follow() {
    var i = cueAt(video.currentTime - shift);
    if (i === active) return;
    if (active >= 0) { rows[active].classList.remove("active"); rows[active].removeAttribute("aria-current"); }
    active = i;
    if (i < 0) return;
    rows[i].classList.add("active");
    rows[i].setAttribute("aria-current", "true");
    if (!keyboardInList()) scrollIntoList(rows[i]);  // the keyboard's row (or the caption being typed) stays in view
  }

  function scrollIntoList(row) {
    if (!row.getClientRects().length) return;  // hidden by the filter: its box is empty, and the list jumped
    var box = list.getBoundingClientRect(), r = row.getBoundingClientRect();
    if (list.scrollHeight > list.clientHeight + 1) {  // the list scrolls by itself (wide screens)
      if (r.top < box.top || r.bottom > box.bottom) list.scrollTop += r.top - box.top - (box.height - r.height) / 2;
      // and the page, where the list's box reaches past the window (a short window: the title bar scrolls away
      // and the list, sized for the window, starts further down): the row showed 22 px at the window's edge
      r = row.getBoundingClientRect();
      var barH = parseFloat(getComputedStyle(document.documentElement).getPropertyValue("--bar-h")) || 0;
      if (r.top < barH || r.bottom > window.innerHeight) row.scrollIntoView({block: "nearest"});
    } else if ((r.top < 0 || r.bottom > window.innerHeight) && !watching()) {
      row.scrollIntoView({block: "center"});
    }
  }

  // one column (phones, narrow windows): the page itself scrolls, and centring the next row while the video plays
  // pushed the picture off the screen at every cue; the list follows again once the video is out of view or stopped
  function watching() {
    if (video.paused || video.ended) return false;
    var v = video.getBoundingClientRect();
    return v.bottom > 0 && v.top < window.innerHeight;
  }

  function seek(i) {
    // a hair past the start: at the exact boundary a player also shows the cue that ends there
    try { video.currentTime = shift + cues[i].start + Math.min(0.001, (cues[i].end - cues[i].start) / 2); } catch (e) { /* no media: still highlight */ }
    follow();
    if (active !== i) {  // the video is missing or not loaded yet: show the choice anyway
      if (active >= 0) rows[active].classList.remove("active");
      active = i;
      rows[i].classList.add("active");
    }
  }

  // Space on a row: play from its cue, or pause. In a long list the player's own buttons are thousands of Tab
  // stops back, and the keyboard could go to a cue but never play it
  function playFrom(i) {
    if (!video.paused && !video.ended) { video.pause(); return; }
    if (cueAt(video.currentTime - shift) !== i) seek(i);  // paused inside this cue: go on from there
    var playing = video.play();
    if (playing && playing.catch) playing.catch(function () { /* no media: the notice says so */ });
  }

  var ticking = false;
  function tick() {
    follow();
    if (!video.paused && !video.ended) requestAnimationFrame(tick); else ticking = false;
  }
  video.addEventListener("play", function () { if (!ticking) { ticking = true; requestAnimationFrame(tick); } });
  ["timeupdate", "seeked"].forEach(function (name) { video.addEventListener(name, follow); });
  // the first cue is marked when the video loads, without scrolling: on a phone the page opened scrolled
  // past its title, buttons and video to the first row
  video.addEventListener("loadedmetadata", function () {
    // a stretch's page (run --start) opens where its captions begin, not at the film's start
    var from = data.video.captioned ? data.video.captioned[0] : 0;
    if (from > 0 && video.currentTime - shift < from && !/^#(?:.*&)?t=/.test(location.hash)) {
      try { video.currentTime = from + shift; } catch (e) { /* no media */ }
    }
    var i = cueAt(video.currentTime - shift);
    if (active < 0 && i >= 0) { active = i; rows[i].classList.add("active"); rows[i].setAttribute("aria-current", "true"); }
  });
  // the video by its path from where the page was written; failing that (the page and the video were moved
  // together), by its name beside the page, once
  var tried = [video.getAttribute("src") || ""];
  var besidePage = tried[0].split(/[\/]/).pop();
  video.addEventListener("error", function () {
    if (besidePage && tried.indexOf(besidePage) < 0) {
      tried.push(besidePage);
      var at = active;
      video.addEventListener("loadedmetadata", function () { if (at >= 0) seek(at); }, {once: true});  // #t= again
      video.src = besidePage;
      return;
    }
    tell("The video ", " cannot be played here (missing, or a format this browser does not play; tried " +
      tried.map(decodeName).join(" and ") + " from this page's folder). The captions and thumbnails below still work.");
  });
  // a picture this browser cannot decode beside a sound it can (MPEG-4 part 2 or HEVC with AAC) raises no error:
  // the player shrank to a sound bar and the page said nothing
  video.addEventListener("loadedmetadata", function () {
    if (video.videoWidth === 0 && data.video.width > 0) {
      tell("The picture of ", " cannot be shown here (a format this browser does not decode; its sound may " +
        "still play). The captions and thumbnails below still work.");
    }
  });
  function tell(before, after) {  // the name isolated: a right-to-left name keeps its own order in the sentence
    var note = document.getElementById("video-error"), name = document.createElement("bdi");
    name.textContent = data.video.name;
    note.textContent = "";
    note.appendChild(document.createTextNode(before));
    note.appendChild(name);
    note.appendChild(document.createTextNode(after));
    note.hidden = false;
  }
  function decodeName(src) { try { return decodeURIComponent(src); } catch (e) { return src; } }

  rows.forEach(function (row, i) {
    var text = row.querySelector(".text");
    text.setAttribute("contenteditable", "true");
    text.setAttribute("spellcheck", "true");
    text.setAttribute("role", "textbox");
    text.setAttribute("aria-label", "caption " + (i + 1));
    row.addEventListener("click", function () { seek(i); });
    row.addEventListener("keydown", function (ev) {
      if (ev.target !== row) return;
      if (ev.key === "Enter") { ev.preventDefault(); seek(i); }
      if (ev.key === " ") { ev.preventDefault(); playFrom(i); }
    });
    // the text when editing began: what Esc goes back to. The window losing focus (another tab, Alt-Tab) blurs
    // and refocuses the caption without ending the edit: Esc then took back nothing (it was already saved)
    var before = null;
    text.addEventListener("focus", function () {
      if (before === null) { before = textOf(i); startedAs[i] = startOf(i); }
    });
    text.addEventListener("input", function () { onEdit(i); });
    text.addEventListener("blur", function () {
      if (document.hasFocus()) before = null;  // the edit ended here, not by the window going to the back
      delete startedAs[i];  // (what a full storage keeps: the caption as the next keystroke finds it)
      showText(i);
    });
    text.addEventListener("keydown", function (ev) {  // the edit ends; the keyboard stays on its row
      // an input method's Enter and Esc (confirm, cancel a conversion) ended the edit; Esc threw it away
      if (ev.isComposing || ev.keyCode === 229) return;
      if (ev.key === "Enter") { ev.preventDefault(); text.blur(); row.focus(); }
      if (ev.key === "Escape") {
        if (before !== null) { text.textContent = before; onEdit(i); }
        before = null;
        text.blur();
        row.focus();
      }
    });
    text.addEventListener("paste", function (ev) {  // plain text only
      ev.preventDefault();
      var plain = (ev.clipboardData || window.clipboardData).getData("text/plain"), inner = clean(plain);
      // one space kept at each end that had any: " in a kitchen" pasted after a word no longer joins onto it
      if (inner) inner = (isSpace(plain.charAt(0)) ? " " : "") + inner + (isSpace(plain.charAt(plain.length - 1)) ? " " : "");
      document.execCommand("insertText", false, inner);
    });
    showText(i);
  });

  // page.html#t=12.5 opens at 12.5 s (the index links matching captions that way); a new #t= on the open
  // page (a link within it, Back and Forward, an edited address) seeks too: it does not reload the page
  function seekToHash() {  // #t=12.5, also among other parameters (#t=12.5&x=1) and as "12." or ".5"
    var hash = /^#(?:.*&)?t=(\d+(?:\.\d*)?|\.\d+)(?:&|$)/.exec(location.hash);
    if (!hash) return;
    var t = parseFloat(hash[1]), at = cueAt(t + 0.0005);
    if (at >= 0) { seek(at); scrollIntoList(rows[at]); rows[at].focus({preventScroll: true}); return; }
    try { video.currentTime = t + shift; } catch (e) { /* no media */ }  // a time between cues: the video goes there
  }
  seekToHash();
  window.addEventListener("hashchange", seekToHash);
  // another tab of this page saved or discarded edits: shown here at once (the caption being typed is left alone)
  window.addEventListener("storage", function (ev) {
    if (ev.key !== storageKey && ev.key !== null) return;
    edits = loadEdits() || edits;
    for (var i = 0; i < rows.length; i++) showText(i);
    refreshStatus();
  });
  // the track loads on its own: edits from an earlier visit go into it once it has its cues
  var trackElement = video.querySelector("track");
  function syncTrack() { for (var i = 0; i < rows.length; i++) showText(i); }
  if (trackElement) {
    if (trackElement.readyState === 2) syncTrack(); else trackElement.addEventListener("load", syncTrack);
  }
  refreshStatus();
}());

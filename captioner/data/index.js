// captioner archive index: filter the videos by words of their captions or names.
// Text only ever goes into the page through textContent (never innerHTML).
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("captioner-data").textContent);
  var input = document.getElementById("filter");
  var count = document.getElementById("count");
  var nothing = document.getElementById("nothing");
  var rows = Array.prototype.slice.call(document.querySelectorAll("tr.video"));
  var MAX_HITS = 3;

  // one form of each letter: a name from macOS spells "é" as "e" and an accent, the keyboard as one letter
  function fold(text) { text = String(text); return (text.normalize ? text.normalize("NFC") : text).toLowerCase(); }

  function clock(seconds) {  // h:mm:ss from an hour on, as the length column and the review page say it ("62:05")
    var s = Math.floor(seconds), h = Math.floor(s / 3600), m = Math.floor((s - h * 3600) / 60);
    s -= h * 3600 + m * 60;
    return (h ? h + ":" + (m < 10 ? "0" : "") : "") + m + ":" + (s < 10 ? "0" : "") + s;
  }

  function markInto(node, text, words) {  // text with each matched word in <mark>, built from text nodes
    var lower = fold(text), pos = 0;
    while (pos < text.length) {
      var best = -1, len = 0;
      words.forEach(function (w) {
        var at = lower.indexOf(w, pos);
        if (at >= 0 && (best < 0 || at < best)) { best = at; len = w.length; }
      });
      if (best < 0) break;
      node.appendChild(document.createTextNode(text.slice(pos, best)));
      var mark = document.createElement("mark");
      mark.textContent = text.slice(best, best + len);
      node.appendChild(mark);
      pos = best + len;
    }
    node.appendChild(document.createTextNode(text.slice(pos)));
  }

  // each video's text folded once, not on every keystroke: 1,000 videos of 60 cues took half a second a key
  var folded = data.videos.map(function (video) {
    var captions = video.captions.map(function (c) { return fold(c[1]); });
    return {haystack: fold(video.name) + " " + captions.join(" "), captions: captions};
  });

  function apply() {
    var words = fold(input.value).split(/\s+/).filter(Boolean);
    var shown = 0;
    rows.forEach(function (row, i) {
      var video = data.videos[i];
      var hits = row.querySelector(".hits");
      hits.textContent = "";
      var captions = video.captions;
      var haystack = folded[i].haystack;
      var match = words.every(function (w) { return haystack.indexOf(w) >= 0; });
      row.hidden = !match;
      hits.hidden = true;
      row.classList.remove("matching");
      if (!match) return;
      shown++;
      if (!words.length) return;
      var listed = 0;
      captions.forEach(function (c, j) {
        var text = folded[i].captions[j];
        if (listed >= MAX_HITS || !words.some(function (w) { return text.indexOf(w) >= 0; })) return;
        var li = document.createElement("li");
        var at = document.createElement("span");
        at.className = "at";
        at.textContent = clock(c[0]);
        var target = video.href ? document.createElement("a") : document.createElement("span");
        if (video.href) target.href = video.href + "#t=" + c[0];
        target.dir = "auto";  // a right-to-left caption reads in its own order
        markInto(target, c[1], words);
        li.appendChild(at);
        li.appendChild(target);
        hits.appendChild(li);
        listed++;
      });
      hits.hidden = listed === 0;
      row.classList.toggle("matching", listed > 0);
    });
    // #count is a status region: written only when its sentence changes, so a screen reader hears the result
    // of the typing, not a repeat on every keystroke; "no video matches" is said there as well as shown below
    var videos = rows.length + (rows.length === 1 ? " video" : " videos");
    var said = !words.length ? videos : shown ? shown + " of " + videos : "0 of " + videos + ": no video matches";
    if (count.textContent !== said) count.textContent = said;
    nothing.hidden = shown > 0;
  }

  // a large archive's list is rebuilt once the typing pauses, not at every key of a word
  var pending = null;
  input.addEventListener("input", function () {
    if (rows.length <= 200) { apply(); return; }
    clearTimeout(pending);
    pending = setTimeout(apply, 150);
  });
  apply();
}());

// captioner pages' sticky title bar (review pages and the index alike).
// It covers what scrolls under it: the page keeps focus clear of it by its measured height (it wraps to two
// lines at 125-175 % zoom), and where it would take a quarter of the screen it scrolls away with the page.
(function () {
  "use strict";
  var bar = document.querySelector(".bar");
  if (!bar) return;
  function fitBar() {
    bar.classList.remove("unstuck");
    var sticky = getComputedStyle(bar).position === "sticky", height = bar.getBoundingClientRect().height;
    if (sticky && height > window.innerHeight / 4) { bar.classList.add("unstuck"); sticky = false; }
    document.documentElement.style.setProperty("--bar-h", (sticky ? Math.ceil(height) : 0) + "px");
  }
  fitBar();
  window.addEventListener("resize", fitBar);
  if (window.ResizeObserver) new ResizeObserver(fitBar).observe(bar);
}());

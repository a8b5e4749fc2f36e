// chimeproxy console: expiry countdowns and the live view's polling. Everything works without
// it except those two; nothing here builds markup from data (rows arrive rendered and escaped).
"use strict";
(function () {
  const loaded = Date.now();

  function span(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + " min " + String(s % 60).padStart(2, "0") + " s";
    const h = Math.floor(m / 60);
    if (h < 48) return h + " h " + String(m % 60).padStart(2, "0") + " min";
    return Math.floor(h / 24) + " d " + (h % 24) + " h";
  }

  function countdowns() {
    const items = document.querySelectorAll(".countdown[data-remaining-ms]");
    if (!items.length) return;
    const tick = function () {
      const gone = Date.now() - loaded;
      items.forEach(function (el) {
        const left = Number(el.dataset.remainingMs) - gone;
        el.textContent = left > 0 ? span(left) : "now (reload to see it closed)";
      });
    };
    tick();
    setInterval(tick, 1000);
  }

  function live() {
    const box = document.getElementById("live");
    if (!box) return;
    const body = box.querySelector("tbody");
    const state = document.getElementById("live-state");
    const seen = new Set(Array.from(body.querySelectorAll("tr[data-id]"), function (r) { return r.dataset.id; }));
    let since = Number(box.dataset.now);
    const feed = box.dataset.feed;
    const row = function (html) {
      const t = document.createElement("tbody");
      t.innerHTML = html;  // rendered and escaped by the server's templates
      return t.firstElementChild;
    };
    // The rows still shown in progress: the feed says which of them have ended since.
    const openRows = function () { return Array.from(body.querySelectorAll("tr[data-open]")); };
    const poll = function () {
      const open = openRows().map(function (r) { return r.dataset.id; });
      const url = feed + (feed.indexOf("?") < 0 ? "?" : "&") + "since=" + since +
        (open.length ? "&open=" + open.slice(0, 50).join(",") : "");
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) {
          if (r.status === 401) { window.location.assign("/console/signin"); throw new Error("signed out"); }
          return r.json();
        })
        .then(function (data) {
          since = data.now;
          const fresh = data.rows.filter(function (item) { return !seen.has(item.id); });
          // Oldest first, each inserted at the top: the newest ends up first.
          fresh.reverse().forEach(function (item) {
            seen.add(item.id);
            body.insertBefore(row(item.html), body.firstChild);
          });
          // An ended call or text takes the place of its row in progress, where it was.
          let ended = 0;
          const shownOpen = new Map(openRows().map(function (r) { return [r.dataset.id, r]; }));
          data.ended.concat(data.rows).forEach(function (item) {
            const old = item.ended && shownOpen.get(item.id);
            if (old) { old.replaceWith(row(item.html)); shownOpen.delete(item.id); ended += 1; }
          });
          if (fresh.length) {
            const empty = box.querySelector("[data-empty]");
            if (empty) empty.remove();
          }
          if (fresh.length || ended) {
            const parts = [];
            if (fresh.length) parts.push(fresh.length + " new");
            if (ended) parts.push(ended + " ended");
            state.textContent = " — " + parts.join(", ");
          }
        })
        .catch(function () {})
        .finally(function () { setTimeout(poll, 2000); });
    };
    setTimeout(poll, 2000);
  }

  document.addEventListener("DOMContentLoaded", function () { countdowns(); live(); });
})();

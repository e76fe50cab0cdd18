// The projector: applies every frame of /stream. `votes` frames (the /votes
// JSON) move the bars; `status` frames light the SERVICE DEGRADED sign and
// update the screen count and version. No polling: when the stream drops,
// a banner says so and we reconnect, also when the browser itself gives up
// (EventSource stops for good after an HTTP error from a proxy).
(() => {
  "use strict";
  // The projector's screen ticket (from /admin's link, renewed by every
  // render): every /stream request carries it, GET and HEAD, so the stream
  // reserve admits this screen; the address bar takes the fresh one, so a
  // reload presents a ticket that is still valid.
  const screen = document.body.dataset.screen || "";
  const streamUrl = screen ? "/stream?screen=" + encodeURIComponent(screen) : "/stream";
  if (screen && window.history && history.replaceState) {
    const here = new URL(window.location.href);
    here.searchParams.set("screen", screen);
    history.replaceState(history.state, "", here);
  }
  const $ = (id) => document.getElementById(id);
  const banner = $("connection");
  const live = $("live");
  const degraded = $("degraded");
  const total = $("total");
  const board = $("results");
  const hiddenSign = $("results-hidden");
  const fmt = new Intl.NumberFormat("en-US");
  const calm = window.matchMedia("(prefers-reduced-motion: reduce)");
  // Reconnect backoff after the browser gave up, and the longest silence
  // we accept once `status` frames (sent every few seconds) have been seen.
  const RETRY_MIN_MS = 1000;
  const RETRY_MAX_MS = 15000;
  // Longest Retry-After we honour from a server whose screen budget is full.
  const RETRY_AFTER_MAX_MS = 60000;
  const SILENCE_MS = 20000;

  const bars = new Map();
  for (const li of document.querySelectorAll("#results li[data-choice]")) {
    bars.set(li.dataset.choice, {
      li,
      count: li.querySelector(".count"),
      pct: li.querySelector(".pct"),
      fill: li.querySelector(".bar__fill"),
      shown: Number(li.dataset.count) || 0,
    });
  }

  // Counts roll up like a taxi meter instead of jumping (unless motion is reduced).
  function roll(bar, to) {
    const from = bar.shown;
    bar.shown = to;
    if (calm.matches || from === to || document.hidden) {
      bar.count.textContent = fmt.format(to);
      return;
    }
    const start = performance.now();
    const step = (now) => {
      if (bar.shown !== to) return; // a newer frame took over
      const t = Math.min(1, (now - start) / 700);
      const eased = 1 - Math.pow(1 - t, 3);
      bar.count.textContent = fmt.format(Math.round(from + (to - from) * eased));
      if (t < 1) requestAnimationFrame(step);
    };
    requestAnimationFrame(step);
  }

  // While the speaker hides the results, frames carry the total only.
  function showHidden(n) {
    hiddenSign.hidden = false;
    board.hidden = true;
    for (const bar of bars.values()) bar.shown = 0;
    total.textContent = fmt.format(Number.isFinite(n) ? n : 0);
  }

  function showVotes(counts) {
    if (counts.hidden === true) return showHidden(counts.total);
    hiddenSign.hidden = true;
    board.hidden = false;
    let sum = 0;
    let max = 0;
    for (const key of bars.keys()) {
      const n = counts[key] && Number.isFinite(counts[key].count) ? counts[key].count : 0;
      sum += n;
      max = Math.max(max, n);
    }
    for (const [key, bar] of bars) {
      const n = counts[key] && Number.isFinite(counts[key].count) ? counts[key].count : 0;
      bar.li.dataset.count = String(n);
      roll(bar, n);
      bar.pct.textContent = (sum ? Math.round((n * 100) / sum) : 0) + "%";
      // Bars are relative to the leader so the race is visible; the
      // percentage beside each one is the honest share.
      bar.fill.style.transform = "scaleX(" + (max ? n / max : 0) + ")";
      bar.li.classList.toggle("is-leader", max > 0 && n === max);
    }
    total.textContent = fmt.format(sum);
  }

  function showStatus(s) {
    const on = Boolean(s.degraded);
    if (on) {
      const failed = Number(s.failed_last_minute) || 0;
      $("failed-count").textContent = fmt.format(failed);
      $("failed-unit").textContent = failed === 1 ? "failed vote" : "failed votes";
      $("degraded-detail").textContent = typeof s.detail === "string" ? s.detail : "";
    }
    if (degraded.hidden === on) degraded.hidden = !on;
    document.body.classList.toggle("is-degraded", on);
    if (Number.isFinite(s.watching)) $("watching").textContent = fmt.format(s.watching);
    if (typeof s.version === "string" && s.version) {
      const version = $("version");
      // A new version on screen is the moment mirrord took over: make it visible.
      if (version.textContent !== s.version) {
        version.textContent = s.version;
        version.classList.add("is-new");
      }
    }
  }

  function setOnline(on) {
    banner.hidden = on;
    live.textContent = on ? "live" : "reconnecting";
    document.body.classList.toggle("is-offline", !on);
  }

  let source = null;
  let retryMs = RETRY_MIN_MS;
  let retryTimer = 0;
  let silenceTimer = 0;

  function heard() {
    setOnline(true);
    retryMs = RETRY_MIN_MS;
  }

  function watchSilence() {
    clearTimeout(silenceTimer);
    silenceTimer = setTimeout(() => {
      // A half-open connection (Wi-Fi roaming, a proxy) delivers nothing and
      // never errors: start over.
      setOnline(false);
      connect();
    }, SILENCE_MS);
  }

  function parse(event) {
    try {
      return JSON.parse(event.data);
    } catch (err) {
      return null;
    }
  }

  function connect() {
    clearTimeout(retryTimer);
    if (source) source.close();
    source = new EventSource(streamUrl);
    source.addEventListener("open", heard);
    source.addEventListener("votes", (event) => {
      const counts = parse(event);
      if (counts) { heard(); showVotes(counts); }
    });
    source.addEventListener("status", (event) => {
      const s = parse(event);
      if (s) { heard(); showStatus(s); watchSilence(); }
    });
    source.addEventListener("error", () => {
      setOnline(false);
      // CONNECTING: the browser retries by itself (the server sends retry: 2000).
      if (source.readyState === EventSource.CLOSED) {
        clearTimeout(silenceTimer);
        retryLater();
      }
    });
  }

  // EventSource hides why it was refused. HEAD /stream (which takes no
  // screen slot) answers 503 + Retry-After while the server's screen budget
  // is full: wait that long, plus jitter so a room of screens does not
  // come back in the same second.
  async function retryLater() {
    let wait = retryMs;
    retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
    try {
      const probe = await fetch(streamUrl, { method: "HEAD", cache: "no-store" });
      const after = Number(probe.headers.get("Retry-After"));
      if (probe.status === 503 && after > 0) wait = Math.min(after * 1000, RETRY_AFTER_MAX_MS);
    } catch (err) {
      // Offline or a proxy in the way: keep the backoff.
    }
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, wait * (1 + Math.random() * 0.5));
  }

  // Draw the server-rendered counts at once; the first frame follows.
  const initial = {};
  for (const [key, bar] of bars) initial[key] = { count: bar.shown };
  if (board.hidden) showHidden(Number(total.textContent.replace(/\D/g, "")));
  else showVotes(initial);
  connect();
})();

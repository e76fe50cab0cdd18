// The incident timeline, live. The server draws the chart; whenever /stream
// says something happened (a votes or status frame), we fetch the chart
// again and swap it in — at most once a second, and for two seconds after
// the last frame, because each process adds its counts about once a second.
(() => {
  "use strict";
  // The projector's screen ticket, as in results.js: on every /stream
  // request, and the fresh one in the address bar for a reload.
  const screen = document.body.dataset.screen || "";
  const streamUrl = screen ? "/stream?screen=" + encodeURIComponent(screen) : "/stream";
  if (screen && window.history && history.replaceState) {
    const here = new URL(window.location.href);
    here.searchParams.set("screen", screen);
    history.replaceState(history.state, "", here);
  }
  const REFRESH_MS = 1000;
  const FOLLOW_MS = 2200;
  const RETRY_MIN_MS = 1000;
  const RETRY_MAX_MS = 15000;
  const banner = document.getElementById("connection");

  let last = 0;
  let timer = 0;
  let busy = false;
  let wantUntil = 0;

  async function refresh() {
    timer = 0;
    busy = true;
    last = Date.now();
    try {
      const resp = await fetch("/timeline?part=chart", { cache: "no-store" });
      if (resp.ok) {
        const tpl = document.createElement("template");
        tpl.innerHTML = await resp.text();
        const fresh = tpl.content.getElementById("timeline-chart");
        const current = document.getElementById("timeline-chart");
        if (fresh && current) current.replaceWith(fresh);
      }
    } catch (err) {
      // The stream's error handler shows the banner; the next frame retries.
    } finally {
      busy = false;
      if (Date.now() < wantUntil) schedule();
    }
  }

  function schedule() {
    if (timer || busy) return;
    timer = setTimeout(refresh, Math.max(0, last + REFRESH_MS - Date.now()));
  }

  function happened() {
    banner.hidden = true;
    wantUntil = Date.now() + FOLLOW_MS;
    schedule();
  }

  let source = null;
  let retryMs = RETRY_MIN_MS;
  function connect() {
    if (source) source.close();
    source = new EventSource(streamUrl);
    source.addEventListener("open", () => { banner.hidden = true; retryMs = RETRY_MIN_MS; });
    source.addEventListener("votes", happened);
    source.addEventListener("status", happened);
    source.addEventListener("error", () => {
      banner.hidden = false;
      // CONNECTING: the browser retries by itself; CLOSED: it gave up, we do not.
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(connect, retryMs);
        retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
      }
    });
  }
  connect();
})();

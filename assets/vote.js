// Progressive enhancement of the vote form (it works without this file):
// send the vote as JSON, show a loading state, then either the confirmation
// or a dialog that says what went wrong, with a retry button.
// ?referral= and ?conf= come from the form's hidden fields, so every step
// keeps them. Each vote the person casts gets one Idempotency-Key, reused by
// every retry of it ("Try again", the same choice tapped again after a failure
// or a timeout), so a vote whose answer was lost is still counted once.
(() => {
  "use strict";
  const form = document.getElementById("vote-form");
  const status = document.getElementById("vote-status");
  const confirm = document.getElementById("confirm");
  const confirmChoice = document.getElementById("confirm-choice");
  const overlay = document.getElementById("overlay");
  if (!form || !confirm || !overlay || !window.fetch || typeof overlay.showModal !== "function") {
    return; // An old browser keeps the plain form post.
  }
  const title = document.getElementById("overlay-title");
  const detail = document.getElementById("overlay-detail");
  const hint = document.getElementById("overlay-hint");
  const retry = document.getElementById("retry");
  // One vote per device: the server says what this phone voted; keep it true.
  const youVoted = document.getElementById("you-voted");
  const youVotedChoice = document.getElementById("you-voted-choice");
  const confirmTitle = document.getElementById("confirm-title");
  const buttons = Array.from(form.querySelectorAll("button[name=choice]"));
  // Conference Wi-Fi can swallow a request: give up after this long.
  const TIMEOUT_MS = 10000;
  let sending = false;
  let lastButton = null;
  // The vote not yet answered for good: { choice, key }.
  let pending = null;

  form.addEventListener("submit", (event) => {
    const button = event.submitter;
    // Enter in a field (there is none today) or an unknown submitter: let the form post.
    if (!button || button.name !== "choice") return;
    event.preventDefault();
    if (!sending) send(button);
  });

  retry.addEventListener("click", () => {
    overlay.close();
    if (lastButton) send(lastButton);
  });
  document.getElementById("overlay-close").addEventListener("click", () => overlay.close());
  overlay.addEventListener("close", () => { if (lastButton) lastButton.focus(); });

  document.getElementById("vote-again").addEventListener("click", () => {
    confirm.hidden = true;
    form.hidden = false;
    status.textContent = "";
    (lastButton || buttons[0]).focus();
  });

  function busy(button, on) {
    sending = on;
    form.setAttribute("aria-busy", on ? "true" : "false");
    for (const b of buttons) b.setAttribute("aria-disabled", on ? "true" : "false");
    button.classList.toggle("is-sending", on);
  }

  // crypto.randomUUID needs a secure context; a phone on http://192.168.x.y does not have one.
  function newKey() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function keyFor(choice) {
    if (!pending || pending.choice !== choice) pending = { choice, key: newKey() };
    return pending.key;
  }

  async function send(button) {
    lastButton = button;
    const key = keyFor(button.value);
    const label = button.querySelector(".choice__label").textContent;
    const referral = form.elements.referral ? form.elements.referral.value : "";
    const body = { choice: button.value };
    if (referral) body.referral = referral;
    busy(button, true);
    status.textContent = "Sending your vote…";
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
    let resp;
    try {
      resp = await fetch("/vote", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json", "Idempotency-Key": key },
        body: JSON.stringify(body),
        signal: abort.signal,
        credentials: "same-origin",
      });
    } catch (err) {
      clearTimeout(timer);
      busy(button, false);
      if (abort.signal.aborted) {
        fail("No answer", "The server did not answer within 10 seconds.", "Your vote may not have been counted. Try again.", false);
      } else {
        fail("No connection", "Your phone could not reach the server.", "Check the Wi-Fi, then try again.", false);
      }
      return;
    }
    clearTimeout(timer);
    let answer = {};
    try { answer = await resp.json(); } catch (err) { /* a proxy's HTML error page: use the status */ }
    busy(button, false);
    // A 2xx or 4xx settles this vote; after a 5xx it may have landed, so its retry keeps the key.
    if (resp.status < 500) pending = null;
    if (resp.ok) {
      const changed = typeof answer.changed_from === "string";
      confirmChoice.textContent = label;
      if (confirmTitle) confirmTitle.textContent = changed ? "Vote changed!" : "Vote counted!";
      if (youVoted && youVotedChoice) {
        youVotedChoice.textContent = label;
        youVoted.hidden = false;
      }
      form.hidden = true;
      confirm.hidden = false;
      status.textContent = (changed ? "Vote changed: " : "Vote counted: ") + label;
      confirm.focus();
      return;
    }
    const said = typeof answer.detail === "string" ? answer.detail : (resp.statusText || "No detail given.");
    if (resp.status >= 500) {
      fail("Service degraded", said, "HTTP " + resp.status + ": the server is up but refusing votes. Your vote was not counted.", true);
    } else {
      fail("Vote not counted", said, "HTTP " + resp.status + ".", false);
    }
  }

  function fail(heading, text, extra, degraded) {
    title.textContent = heading;
    detail.textContent = text;
    hint.textContent = extra;
    status.textContent = heading + ". Your vote was not counted.";
    overlay.classList.toggle("is-degraded", degraded);
    if (!overlay.open) overlay.showModal();
    retry.focus();
  }
})();

// Progressive enhancement of the vote form: send JSON and show the outcome.
(() => {
  const form = document.getElementById("vote-form");
  const status = document.getElementById("vote-status");
  if (!form || !window.fetch) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const choice = event.submitter && event.submitter.value;
    if (!choice) return;
    const data = new FormData(form);
    const body = { choice, referral: data.get("referral") || null };
    status.textContent = "Sending…";
    try {
      const resp = await fetch("/vote", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      const answer = await resp.json().catch(() => ({}));
      status.textContent = resp.ok
        ? "Thanks! Your vote is counted."
        : (resp.status >= 500 ? "SERVICE DEGRADED: " : "Error: ") + (answer.detail || resp.status);
    } catch (err) {
      status.textContent = "Network error, please try again.";
    }
  });
})();

// Live results: apply every `votes` frame of /stream; EventSource reconnects by itself.
(() => {
  const banner = document.getElementById("connection");
  const total = document.getElementById("total");
  const source = new EventSource("/stream");
  source.addEventListener("votes", (event) => {
    const counts = JSON.parse(event.data);
    let sum = 0;
    for (const [key, entry] of Object.entries(counts)) {
      const li = document.querySelector(`li[data-choice="${key}"] .count`);
      if (li) li.textContent = entry.count;
      sum += entry.count;
    }
    total.textContent = sum;
    banner.hidden = true;
  });
  source.addEventListener("error", () => { banner.hidden = false; });
})();

// The projector through the production shape (SPEC §11.2): Debian's
// Chromium, headless, opens /results through scripts/cluster's nginx (BASE_URL)
// in front of several replicas, each started with its own APP_VERSION
// (browser-r1, browser-r2, ...). The stream's status frames name the replica
// it landed on; the test restarts exactly that one and the page must come
// back by itself and show the next vote. Run by scripts/browser-test.
// (The page comes back through EventSource's own reconnection, or failing that
// results.js's silence watchdog: either keeps this test green.)

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chromium } from "playwright-core";

const BASE = process.env.BASE_URL;
const ROOT = process.env.ROOT;
const CLUSTER_DIR = process.env.CLUSTER_DIR;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
if (!BASE || !ROOT || !CLUSTER_DIR) throw new Error("BASE_URL, ROOT and CLUSTER_DIR come from scripts/browser-test");
// A bound on waiting for a pushed frame or a reconnect, not a speed limit.
const WAIT = 30000;

let browser;
const problems = [];

before(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu"] });
});
after(async () => {
  if (browser) await browser.close();
});

/** Runs scripts/lib/cluster.sh's COMMAND on the cluster of scripts/browser-test. */
function cluster(command) {
  const script = `set -euo pipefail; source "$0/scripts/lib/stack.sh"; source "$0/scripts/lib/cluster.sh"; cluster_load "$1"; ${command}`;
  return execFileSync("bash", ["-c", script, ROOT, CLUSTER_DIR], { encoding: "utf8", timeout: 120000 });
}

/** A vote through the proxy, as a phone sends it. */
async function vote(choice) {
  const res = await fetch(`${BASE}/vote`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "Idempotency-Key": `browser-cluster-${choice}-${Date.now()}-${Math.random()}` },
    body: JSON.stringify({ choice }),
  });
  return res.status;
}

async function shows(page, choice, n) {
  await page.waitForFunction(
    ([c, want]) => document.querySelector(`li[data-choice="${c}"]`).dataset.count === String(want),
    [choice, n],
    { timeout: WAIT },
  );
}

test("results page through nginx goes live, shows a vote cast through the proxy, and after its replica restarts shows the next one", async () => {
  const ctx = await browser.newContext({ baseURL: BASE, viewport: { width: 1920, height: 1080 } });
  // The version in the stream's own status frames names the replica serving
  // the stream (the page itself may have come from another one).
  await ctx.addInitScript(() => {
    const Native = window.EventSource;
    window.EventSource = class extends Native {
      constructor(...args) {
        super(...args);
        this.addEventListener("status", (e) => {
          window.streamVersion = JSON.parse(e.data).version;
        });
      }
    };
  });
  const page = await ctx.newPage();
  page.on("pageerror", (err) => problems.push(err.message));
  await page.goto("/results");
  await page.locator("#live", { hasText: "live" }).waitFor({ timeout: WAIT });
  const serving = await (await page.waitForFunction(() => window.streamVersion, null, { timeout: WAIT })).jsonValue();
  assert.match(serving, /^browser-r\d+$/);
  const replica = serving.replace("browser-r", "");

  // The QR codes come from the Host header (no PUBLIC_URL): nginx must pass
  // the host and port the projector used, as ingress-nginx does.
  assert.deepEqual(await page.locator(".qr-card__url").allTextContents(), [`${BASE}/`, `${BASE}/?referral=conf-partner-2026`]);

  const before = Number(await page.locator('li[data-choice="ai"]').getAttribute("data-count"));
  assert.equal(await vote("ai"), 200);
  await shows(page, "ai", before + 1);

  // Its replica drains (SIGTERM, closing every stream) and starts again as a new version.
  cluster(`replica_stop ${replica} TERM && replica_start ${replica} browser-r${replica}-restarted`);
  // The page reconnects by itself, to whichever replica nginx picks.
  await page.waitForFunction((old) => window.streamVersion !== old, serving, { timeout: WAIT });
  await page.locator("#live", { hasText: "live" }).waitFor({ timeout: WAIT });
  assert.equal(await vote("ai"), 200);
  await shows(page, "ai", before + 2);
  assert.deepEqual(problems, []);
  await ctx.close();
});

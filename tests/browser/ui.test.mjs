// The pages, tested as a person uses them: Debian's Chromium, headless,
// driven by playwright-core against the real vote-api binary that
// scripts/browser-test started (BASE_URL). Tests run in order and share
// one browser; each opens its own context (phone, projector, no script).
// Every request of every page is recorded: none may leave the origin.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { join } from "node:path";
import { chromium } from "playwright-core";

const BASE = process.env.BASE_URL;
// The same binary with ONE_VOTE_PER_DEVICE=yes and no ADMIN_TOKEN (so /admin
// from this machine hands out screen tickets).
const DEVICE = process.env.DEVICE_URL;
const ADMIN_TOKEN = process.env.ADMIN_TOKEN || "";
const SHOTS = process.env.SCREENSHOT_DIR || "target/screenshots";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
if (!BASE) throw new Error("BASE_URL is not set: run through scripts/browser-test");
if (!DEVICE) throw new Error("DEVICE_URL is not set: run through scripts/browser-test");
const ORIGIN = new URL(BASE).origin;

const PARTNER = "conf-partner-2026";
const LABELS = {
  print: "Add more print statements",
  stare: "Stare at the code until it confesses",
  ai: "Ask an AI to explain it",
  revert: "Revert and pretend it never happened",
  restart: "Turn it off and on again",
};
const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
const SMALL_PHONE = { viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true };
const PROJECTOR = { viewport: { width: 1920, height: 1080 } };
// How long any awaited condition (a pushed update, a stream going live, a
// dialog) may take before the test gives up. A bound on waiting, not a speed
// limit: scripts/bench measures speed, and a busy 2-core box may take seconds
// for an fsync'd commit or a page's first stream frame.
const WAIT = 30000;

let browser;
const contexts = [];
const foreign = []; // requests to any other origin
const problems = []; // script errors and CSP violations
const failedLoads = []; // requests to the app's own origin that failed or got >= 400

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Playwright adds --headless and a fresh --user-data-dir of its own.
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  for (const ctx of contexts) await ctx.close().catch(() => {});
  if (browser) await browser.close();
});

/** A browser context whose every request and console error is recorded. */
async function open(options = {}) {
  const ctx = await browser.newContext({ baseURL: BASE, ...options });
  const origin = new URL(options.baseURL || BASE).origin;
  contexts.push(ctx);
  ctx.on("request", (req) => {
    const url = req.url();
    if (!url.startsWith("data:") && new URL(url).origin !== origin) foreign.push(url);
  });
  ctx.on("page", watch);
  // Only the app's own origin: a test's proxy (another origin) fails on purpose.
  if (origin === ORIGIN) watchLoads(ctx);
  const page = await ctx.newPage();
  return { ctx, page };
}

function watch(page) {
  page.on("pageerror", (err) => problems.push(`${page.url()}: ${err.message}`));
  page.on("console", (msg) => {
    // "Failed to load resource" names no URL: watchLoads checks every load
    // by its URL and status instead. A CSP violation or a script error is a bug.
    if (msg.type() === "error" && !/Failed to load resource/.test(msg.text())) {
      problems.push(`${page.url()}: ${msg.text()}`);
    }
  });
}

/**
 * The only loads of the app's own origin that may fail: a vote the server
 * refuses on purpose (the referral cache bug: 503), the admin test's wrong
 * token (401), a load the browser cancels when its page closes or navigates
 * away (a live stream, a favicon), and the 503 on /stream the screen-budget
 * test answers itself.
 * Anything else (a missing asset, a 404 link, a 500) is a bug.
 */
function expectedFailure(method, path, status, error) {
  if (method === "POST" && path === "/vote" && status === 503) return true;
  if (method === "POST" && path.startsWith("/admin/") && status === 401) return true;
  // The browser itself cancelled the load because its page closed or moved
  // on (a live stream, a favicon still loading): not an answer of the app.
  if (method === "GET" && error === "net::ERR_ABORTED") return true;
  // The screen-budget test answers /stream 503 itself (route.fulfill).
  if ((method === "GET" || method === "HEAD") && path === "/stream" && status === 503) return true;
  return false;
}

function watchLoads(ctx) {
  const record = (req, status, error) => {
    const url = new URL(req.url());
    if (url.origin !== ORIGIN || expectedFailure(req.method(), url.pathname, status, error)) return;
    failedLoads.push(`${req.method()} ${url.pathname}${url.search} -> ${status || error}`);
  };
  ctx.on("response", (resp) => {
    if (resp.status() >= 400) record(resp.request(), resp.status(), null);
  });
  ctx.on("requestfailed", (req) => record(req, 0, req.failure()?.errorText));
}

/**
 * The lowest WCAG contrast ratio of the text matched by each selector,
 * against its own background: ancestors' background colours composited
 * until an opaque one, or over the raw brick (the brightest thing behind
 * the night overlay) as the worst case. Returns failures below AA: 4.5:1,
 * or 3:1 for text of 24 px and up.
 */
function contrastFailures(page, selectors) {
  return page.evaluate((selectors) => {
    const BRICK = [107, 42, 31, 1];
    const parse = (c) => {
      const m = c.match(/rgba?\(([^)]+)\)/);
      if (!m) return [0, 0, 0, 0];
      const [r, g, b, a = "1"] = m[1].split(/[ ,/]+/).filter(Boolean);
      return [Number(r), Number(g), Number(b), Number(a)];
    };
    const over = (top, below) => {
      const a = top[3] + below[3] * (1 - top[3]);
      if (a === 0) return [0, 0, 0, 0];
      const mix = (i) => (top[i] * top[3] + below[i] * below[3] * (1 - top[3])) / a;
      return [mix(0), mix(1), mix(2), a];
    };
    const background = (el) => {
      const layers = [];
      for (let node = el; node && node.nodeType === 1; node = node.parentElement) {
        const c = parse(getComputedStyle(node).backgroundColor);
        if (c[3] > 0) layers.push(c);
        if (c[3] >= 1) break;
      }
      let out = layers.length && layers[layers.length - 1][3] >= 1 ? layers.pop() : BRICK;
      while (layers.length) out = over(layers.pop(), out);
      return out;
    };
    const lum = ([r, g, b]) => {
      const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const failures = [];
    for (const selector of selectors) {
      const els = [...document.querySelectorAll(selector)].filter((e) => e.getClientRects().length && e.textContent.trim());
      if (!els.length) failures.push(`${selector}: nothing visible`);
      for (const el of els) {
        const style = getComputedStyle(el);
        const bg = background(el);
        const fg = over(parse(style.color), bg);
        const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
        const ratio = (hi + 0.05) / (lo + 0.05);
        const need = parseFloat(style.fontSize) >= 24 ? 3 : 4.5;
        if (ratio < need) failures.push(`${selector} "${el.textContent.trim().slice(0, 30)}": ${ratio.toFixed(2)} < ${need}`);
      }
    }
    return failures;
  }, selectors);
}

/**
 * A TCP proxy in front of the app, so a test can do what mirrord and the
 * ingress do on stage: reset every open connection, answer 502 for a while,
 * then let traffic through again.
 */
function startProxy(target) {
  const { hostname, port } = new URL(target);
  const sockets = new Set();
  let down = false;
  const track = (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
  };
  const server = net.createServer((client) => {
    track(client);
    if (down) {
      client.once("data", () =>
        client.end("HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: 11\r\nconnection: close\r\n\r\nBad Gateway"),
      );
      return;
    }
    const upstream = net.connect(Number(port), hostname);
    track(upstream);
    upstream.on("close", () => client.destroy());
    client.on("close", () => upstream.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({
        url: `http://127.0.0.1:${server.address().port}`,
        outage() {
          down = true;
          for (const s of sockets) s.destroy();
        },
        restore() {
          down = false;
        },
        close() {
          for (const s of sockets) s.destroy();
          return new Promise((done) => server.close(done));
        },
      }),
    ),
  );
}

async function api(path, init = {}) {
  const resp = await fetch(BASE + path, init);
  const text = await resp.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: resp.status, json, text };
}

const counts = async () => (await api("/votes")).json;
const total = async () => Object.values(await counts()).reduce((s, e) => s + e.count, 0);

function vote(choice, referral) {
  return api("/vote", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(referral ? { choice, referral } : { choice }),
  });
}

function reset({ referralCache = false } = {}) {
  const query = referralCache ? "?confirm=yes&referral_cache=yes" : "?confirm=yes";
  return api("/admin/reset" + query, {
    method: "POST",
    headers: ADMIN_TOKEN ? { authorization: `Bearer ${ADMIN_TOKEN}` } : {},
  });
}

/** Posts `n` votes for each choice, a few at a time, like a busy room. */
async function crowd(spread) {
  const queue = Object.entries(spread).flatMap(([choice, n]) => Array(n).fill(choice));
  for (let i = 0; i < queue.length; i += 25) {
    const answers = await Promise.all(queue.slice(i, i + 25).map((c) => vote(c)));
    for (const a of answers) assert.equal(a.status, 200, a.text);
  }
}

test("vote page with JavaScript: tap a choice, see the confirmation, the vote is counted", async () => {
  const { page } = await open(SMALL_PHONE);
  const before = (await counts()).ai.count;
  await page.goto("/?conf=kubecon");
  assert.match(await page.title(), /KubeCon · New York/);
  assert.equal(await page.locator("html").getAttribute("lang"), "en");
  // Mobile first: nothing wider than a 360 px phone, thumb-sized buttons.
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 360), "no sideways scroll at 360 px");
  const buttons = page.locator("button[name=choice]");
  assert.equal(await buttons.count(), 5);
  for (const box of await buttons.evaluateAll((els) => els.map((e) => e.getBoundingClientRect().toJSON()))) {
    assert.ok(box.height >= 48 && box.width >= 48, `tap target ${box.width}x${box.height}`);
  }

  await page.getByRole("button", { name: LABELS.ai }).tap();
  const heading = page.getByRole("heading", { name: "Vote counted!" });
  await heading.waitFor({ timeout: WAIT });
  assert.equal(await page.locator("#confirm-choice").textContent(), LABELS.ai);
  assert.equal(await page.evaluate(() => document.activeElement.id), "confirm", "focus moves to the confirmation");
  const results = await page.getByRole("link", { name: "See the live results" }).getAttribute("href");
  assert.equal(results, "/results?conf=kubecon");
  assert.equal((await counts()).ai.count, before + 1);

  // "Vote again" brings the form back.
  await page.getByRole("button", { name: "Vote again" }).tap();
  await buttons.first().waitFor({ state: "visible" });
});

test("vote page without JavaScript: the form posts, 303 to a thank-you page; referral and conf survive", async () => {
  const { page } = await open({ ...SMALL_PHONE, javaScriptEnabled: false });
  const before = (await counts()).revert.count;
  await page.goto(`/?referral=${PARTNER}&conf=lisbon`);
  const posted = page.waitForResponse((r) => r.request().method() === "POST" && r.url().endsWith("/vote"));
  await page.getByRole("button", { name: LABELS.revert }).tap();
  assert.equal((await posted).status(), 303);
  await page.waitForURL(/\/thanks\?/);
  const url = new URL(page.url());
  assert.equal(url.searchParams.get("choice"), "revert");
  assert.equal(url.searchParams.get("referral"), PARTNER);
  assert.equal(url.searchParams.get("conf"), "lisbon");
  await page.getByRole("heading", { name: "Vote counted!" }).waitFor();
  assert.match(await page.locator("main").textContent(), /Revert and pretend it never happened/);
  for (const name of ["See the live results", "Vote again"]) {
    const href = await page.getByRole("link", { name }).getAttribute("href");
    assert.match(href, new RegExp(`\\?referral=${PARTNER}&conf=lisbon$`), name);
  }
  assert.equal((await counts()).revert.count, before + 1);
});

test("keyboard and screen reader: the page reads as a question with five buttons, and votes by keyboard with a visible focus", async () => {
  const { page } = await open({ viewport: { width: 1280, height: 800 } });
  await page.goto(`/?referral=${PARTNER}&conf=dwx`);
  const tree = await page.locator("body").ariaSnapshot();
  const question = "What's your go-to debugging strategy?";
  assert.ok(tree.includes(`heading "${question}" [level=1]`), tree);
  assert.ok(tree.includes(`form "${question}"`), tree);
  for (const label of Object.values(LABELS)) assert.ok(tree.includes(`button "${label}"`), label);
  assert.match(tree, /img "DWX Developer World, live poll"/);
  assert.match(tree, /- banner:/);
  assert.match(tree, /- main:/);
  assert.match(tree, /- contentinfo:/);
  assert.deepEqual(
    await contrastFailures(page, [".kicker", ".question h1", ".referral", ".choice__label", ".choice__num", ".street__meta a", ".street__version"]),
    [],
    "text contrast (WCAG AA)",
  );

  // Tab: the skip link first, then the choices, each with a visible ring.
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "Skip to content");
  await page.keyboard.press("Tab");
  await page.keyboard.press("Tab");
  const focused = await page.evaluate(() => {
    const el = document.activeElement;
    const style = getComputedStyle(el);
    return { value: el.value, outline: style.outlineStyle, width: parseFloat(style.outlineWidth) };
  });
  assert.equal(focused.value, "stare");
  assert.ok(focused.outline !== "none" && focused.width >= 2, `focus ring ${JSON.stringify(focused)}`);

  const before = (await counts()).stare.count;
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Vote counted!" }).waitFor({ timeout: WAIT });
  assert.equal((await counts()).stare.count, before + 1);
  assert.equal(await page.locator("#vote-status").textContent(), `Vote counted: ${LABELS.stare}`);
});

test("results page shows a vote posted by another client, pushed, without polling", async () => {
  const { page } = await open(PROJECTOR);
  const fetched = [];
  page.on("request", (req) => fetched.push(new URL(req.url()).pathname));
  await page.goto("/results");
  await page.locator("#live", { hasText: "live" }).waitFor({ timeout: WAIT });
  assert.equal(await page.locator("#connection").isHidden(), true);

  const before = await counts();
  const sum = Object.values(before).reduce((s, e) => s + e.count, 0);
  assert.equal((await vote("stare")).status, 200);
  await page.waitForFunction(
    (n) => document.querySelector('li[data-choice="stare"]').dataset.count === String(n),
    before.stare.count + 1,
    { timeout: WAIT },
  );
  // The visible number rolls up to the new count; the total follows.
  await page.locator('li[data-choice="stare"] .count', { hasText: String(before.stare.count + 1) }).waitFor({ timeout: WAIT });
  assert.equal(await page.locator("#total").textContent(), String(sum + 1));

  // Both QR codes, drawn server-side from the request's Host.
  const qr = page.locator("svg.qr");
  assert.equal(await qr.count(), 2);
  const urls = await page.locator(".qr-card__url").allTextContents();
  assert.deepEqual(urls, [`${BASE}/`, `${BASE}/?referral=${PARTNER}`]);
  assert.equal(await page.locator("#version").textContent(), "browser-test");
  assert.deepEqual(
    await contrastFailures(page, [".poll__question", ".bar__label", ".count", ".pct", ".qr-card strong", ".qr-card__url", ".meter dt", ".meter dd"]),
    [],
    "text contrast (WCAG AA)",
  );

  assert.equal(fetched.filter((p) => p === "/stream").length, 1, "one stream");
  assert.equal(fetched.filter((p) => p === "/votes").length, 0, "no polling");
});

test("results page: when the stream drops the banner shows, and the page reconnects by itself, also after 502s", async () => {
  const proxy = await startProxy(BASE);
  try {
    const { page } = await open({ ...PROJECTOR, baseURL: proxy.url });
    await page.goto("/results");
    await page.locator("#live", { hasText: "live" }).waitFor({ timeout: WAIT });

    // Connections reset, then the proxy answers 502: EventSource gives up for good after that.
    const refused = page.waitForResponse((r) => r.url().endsWith("/stream") && r.status() === 502, { timeout: WAIT });
    proxy.outage();
    await page.locator("#connection").waitFor({ state: "visible", timeout: WAIT });
    assert.match(await page.locator("#connection").textContent(), /Connection lost/);
    const before = (await counts()).print.count;
    assert.equal((await vote("print")).status, 200);
    await refused;

    proxy.restore();
    await page.locator("#connection").waitFor({ state: "hidden", timeout: WAIT });
    await page.waitForFunction(
      (n) => document.querySelector('li[data-choice="print"]').dataset.count === String(n),
      before + 1,
      { timeout: WAIT },
    );
  } finally {
    await proxy.close();
  }
});

test("admin page: RESET SESSION asks for confirmation and the token, then says what happened", async () => {
  assert.equal((await vote("restart")).status, 200);
  const { page } = await open(SMALL_PHONE);
  await page.goto("/admin");
  await page.getByRole("button", { name: "RESET SESSION" }).tap();
  await page.waitForURL(/step=confirm/);
  await page.getByRole("heading", { name: /Delete all \d+ votes\?/ }).waitFor();
  assert.ok((await total()) > 0, "nothing deleted before the confirmation");

  await page.getByLabel("Admin token").fill("wrong-token");
  let answer = page.waitForResponse((r) => r.url().includes("/admin/reset"));
  await page.getByRole("button", { name: "Yes, reset the session" }).tap();
  assert.equal((await answer).status(), 401);
  await page.getByRole("heading", { name: "Reset failed" }).waitFor();
  assert.match(await page.locator("#outcome-message").textContent(), /admin token/i);
  assert.ok((await total()) > 0, "a wrong token deletes nothing");

  await page.goto("/admin?step=confirm");
  await page.getByLabel("Admin token").fill(ADMIN_TOKEN);
  answer = page.waitForResponse((r) => r.url().includes("/admin/reset"));
  await page.getByRole("button", { name: "Yes, reset the session" }).tap();
  assert.equal((await answer).status(), 200);
  await page.getByRole("heading", { name: "Session reset" }).waitFor();
  assert.match(await page.locator("#outcome-message").textContent(), /all votes deleted/);
  assert.equal(await total(), 0);
});

test("screenshots: the vote page on a phone and the results on a projector", async () => {
  await crowd({ print: 23, stare: 41, ai: 67, revert: 12, restart: 35 });
  const phone = await open({ ...PHONE, reducedMotion: "reduce" });
  await phone.page.goto("/?conf=sreday");
  await phone.page.evaluate(() => document.fonts.ready);
  await phone.page.screenshot({ path: join(SHOTS, "vote.png") });

  const wall = await open({ ...PROJECTOR, reducedMotion: "reduce" });
  await wall.page.goto("/results?conf=sreday");
  await wall.page.locator("#live", { hasText: "live" }).waitFor({ timeout: WAIT });
  await wall.page.evaluate(() => document.fonts.ready);
  await wall.page.screenshot({ path: join(SHOTS, "results.png") });
  // The projector fits its screen: no scrolling at 1920x1080.
  const { w, h } = await wall.page.evaluate(() => ({
    w: document.documentElement.scrollWidth,
    h: document.documentElement.scrollHeight,
  }));
  assert.ok(w <= 1920 && h <= 1080, `results page is ${w}x${h}`);
});

test("after 10 referral votes the vote page shows the degraded overlay and /results lights SERVICE DEGRADED", async () => {
  // A fresh referral cache, whatever ran before.
  assert.equal((await reset({ referralCache: true })).status, 200);
  await crowd({ print: 18, stare: 29, ai: 44, revert: 9, restart: 25 });
  const wall = await open({ ...PROJECTOR, reducedMotion: "reduce" });
  await wall.page.goto("/results");
  await wall.page.locator("#live", { hasText: "live" }).waitFor({ timeout: WAIT });
  assert.equal(await wall.page.locator("#degraded").isHidden(), true, "dark while votes succeed");

  for (let i = 1; i <= 10; i++) {
    const answer = await vote("ai", PARTNER);
    assert.equal(answer.status, 200, `referral vote ${i}: ${answer.text}`);
  }

  const phone = await open({ ...PHONE, reducedMotion: "reduce" });
  await phone.page.goto(`/?referral=${PARTNER}`);
  const before = await total();
  await phone.page.getByRole("button", { name: LABELS.stare }).tap();
  const dialog = phone.page.getByRole("alertdialog");
  await dialog.waitFor({ timeout: WAIT });
  assert.equal(await phone.page.locator("#overlay-title").textContent(), "Service degraded");
  assert.match(await phone.page.locator("#overlay-detail").textContent(), /referral cache exhausted \(\d+ entries\)/);
  assert.equal(await phone.page.evaluate(() => document.activeElement.id), "retry", "focus on Try again");
  assert.equal(await total(), before, "the refused vote is not counted");

  await wall.page.locator("#degraded").waitFor({ state: "visible", timeout: WAIT });
  assert.ok(Number(await wall.page.locator("#failed-count").textContent()) >= 1);
  assert.match(await wall.page.locator("#degraded-detail").textContent(), /referral cache exhausted/);

  // Retry fails the same way and says so again.
  await phone.page.getByRole("button", { name: "Try again" }).tap();
  await dialog.waitFor();
  await phone.page.screenshot({ path: join(SHOTS, "vote-degraded.png") });
  await wall.page.screenshot({ path: join(SHOTS, "results-degraded.png") });

  // Without JavaScript the form lands on a page that says the same, with the same status.
  const plain = await open({ ...SMALL_PHONE, javaScriptEnabled: false });
  await plain.page.goto(`/?referral=${PARTNER}&conf=dwx`);
  const failedBefore = Number(await wall.page.locator("#failed-count").textContent());
  const posted = plain.page.waitForResponse((r) => r.request().method() === "POST");
  await plain.page.getByRole("button", { name: LABELS.print }).tap();
  assert.equal((await posted).status(), 503);
  await plain.page.getByRole("heading", { name: "Service degraded" }).waitFor();
  assert.match(await plain.page.locator("main").textContent(), /referral cache exhausted/);
  // The projector counts that failure too, with the server's sentence.
  await wall.page.waitForFunction(
    (n) => Number(document.getElementById("failed-count").textContent) > n,
    failedBefore,
    { timeout: WAIT },
  );
  assert.match(await wall.page.locator("#degraded-detail").textContent(), /referral cache exhausted/);
  assert.equal(await plain.page.locator("input[name=referral]").getAttribute("value"), PARTNER, "retry keeps the referral");
});

/** Serves `html` on a port of its own: a page of another site. */
function startForeignSite(html) {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(html);
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({ port: server.address().port, close: () => new Promise((done) => server.close(done)) }),
    ),
  );
}

test("a page on another site cannot vote or reset through the visitor's browser: 403, nothing changes", async () => {
  // The classic CSRF forms: text/plain smuggles JSON past CORS, urlencoded is a
  // plain vote, and a reset with a guessed token. All submitted by the browser.
  const site = await startForeignSite(`<!doctype html><title>Free pizza</title>
    <form id="json" method="post" action="${BASE}/vote" enctype="text/plain">
      <input name='{"choice":"ai","x":"' value='"}'></form>
    <form id="form" method="post" action="${BASE}/vote"><input name="choice" value="ai"></form>
    <form id="reset" method="post" action="${BASE}/admin/reset?confirm=yes">
      <input name="token" value="guess"></form>`);
  const ctx = await browser.newContext();
  contexts.push(ctx);
  try {
    const before = await counts();
    // localhost vs 127.0.0.1: another site (Sec-Fetch-Site: cross-site); another
    // port of the same host: same site, but still another origin.
    for (const origin of [`http://localhost:${site.port}`, `http://127.0.0.1:${site.port}`]) {
      for (const form of ["json", "form", "reset"]) {
        const page = await ctx.newPage();
        await page.goto(`${origin}/`);
        const answer = page.waitForResponse((r) => r.url().startsWith(BASE) && r.request().method() === "POST");
        await page.evaluate((id) => document.getElementById(id).submit(), form);
        const resp = await answer;
        assert.equal(resp.status(), 403, `${origin} ${form}`);
        assert.equal(resp.request().headers()["origin"], origin);
        assert.match(await resp.text(), /Cross-site request refused/);
        await page.close();
      }
      // fetch without CORS: the request goes out, the guard refuses it.
      const page = await ctx.newPage();
      await page.goto(`${origin}/`);
      const answer = page.waitForResponse((r) => r.url() === `${BASE}/vote`);
      await page.evaluate((url) => fetch(url, { method: "POST", mode: "no-cors", body: "choice=ai",
        headers: { "content-type": "application/x-www-form-urlencoded" } }), `${BASE}/vote`);
      assert.equal((await answer).status(), 403);
      await page.close();
    }
    assert.deepEqual(await counts(), before, "no vote counted, nothing reset");
  } finally {
    await site.close();
  }
});

// ---- The speaker's console (docs/contract.md, the speaker's console) -------------------------------------------

function setVisible(visible) {
  return api(`/admin/results?visible=${visible}`, {
    method: "POST",
    headers: ADMIN_TOKEN ? { authorization: `Bearer ${ADMIN_TOKEN}` } : {},
  });
}

test("reveal: HIDE RESULTS on /admin turns the projector's bars into RESULTS HIDDEN live, SHOW RESULTS brings them back", async () => {
  assert.equal((await reset()).status, 200);
  await crowd({ print: 3, stare: 5, ai: 8, revert: 1, restart: 4 });
  const wall = await open({ ...PROJECTOR, reducedMotion: "reduce" });
  await wall.page.goto("/results");
  await wall.page.locator("#live", { hasText: "live" }).waitFor({ timeout: WAIT });
  assert.equal(await wall.page.locator("#results-hidden").isHidden(), true);

  const admin = await open(SMALL_PHONE);
  await admin.page.goto("/admin");
  await admin.page.getByLabel("Admin token").first().fill(ADMIN_TOKEN);
  let answer = admin.page.waitForResponse((r) => r.url().includes("/admin/results"));
  await admin.page.getByRole("button", { name: "HIDE RESULTS" }).tap();
  assert.equal((await answer).status(), 200);
  await admin.page.getByRole("heading", { name: "Done" }).waitFor();

  // Live on the projector: the sign, the total, no bars.
  await wall.page.locator("#results-hidden").waitFor({ state: "visible", timeout: WAIT });
  assert.equal(await wall.page.locator("#results").isHidden(), true);
  assert.match(await wall.page.locator("#results-hidden").textContent(), /Results hidden\s*—\s*keep voting/i);
  assert.equal(await wall.page.locator("#total").textContent(), "21");
  // A phone cannot peek.
  assert.deepEqual((await api("/votes")).json, { hidden: true, total: 21 });
  assert.equal((await vote("ai")).status, 200);
  await wall.page.locator("#total", { hasText: "22" }).waitFor({ timeout: WAIT });
  await wall.page.evaluate(() => document.fonts.ready);
  await wall.page.screenshot({ path: join(SHOTS, "results-hidden.png") });
  assert.deepEqual(await contrastFailures(wall.page, [".hidden-sign__tube", ".meter dd"]), [], "text contrast (WCAG AA)");

  // A projector opened while hidden is drawn hidden by the server already.
  const late = await open({ ...PROJECTOR, javaScriptEnabled: false });
  await late.page.goto("/results");
  assert.equal(await late.page.locator("#results-hidden").isVisible(), true);
  assert.equal(await late.page.locator('li[data-choice="ai"]').getAttribute("data-count"), "0");

  await admin.page.goto("/admin");
  await admin.page.getByLabel("Admin token").first().fill(ADMIN_TOKEN);
  answer = admin.page.waitForResponse((r) => r.url().includes("/admin/results"));
  await admin.page.getByRole("button", { name: "SHOW RESULTS" }).tap();
  assert.equal((await answer).status(), 200);
  await wall.page.locator("#results").waitFor({ state: "visible", timeout: WAIT });
  assert.equal(await wall.page.locator("#results-hidden").isHidden(), true);
  await wall.page.waitForFunction(() => document.querySelector('li[data-choice="ai"]').dataset.count === "9", null, { timeout: WAIT });
});

test("timeline: the projector page draws accepted votes, the wall of refusals and a table, live, at 1920x1080 and 1280x720", async () => {
  assert.equal((await reset({ referralCache: true })).status, 200);
  const wall = await open({ ...PROJECTOR, reducedMotion: "reduce" });
  await wall.page.goto("/timeline");
  await wall.page.getByText("No votes since the last reset").waitFor();

  await crowd({ print: 6, stare: 9, ai: 12, revert: 2, restart: 5 });
  for (let i = 1; i <= 14; i++) await vote("ai", PARTNER);
  assert.equal((await vote("nope")).status, 400);
  // Live: no reload, the chart follows the stream.
  await wall.page.locator("#tl-total-accepted", { hasText: "44" }).waitFor({ timeout: WAIT });
  await wall.page.locator("#tl-total-referral_cache_exhausted", { hasText: "4" }).waitFor({ timeout: WAIT });
  await wall.page.locator("#tl-total-invalid", { hasText: "1" }).waitFor({ timeout: WAIT });
  assert.ok((await wall.page.locator("rect.tl-accepted").count()) >= 1);
  assert.ok((await wall.page.locator("rect.tl-cache").count()) >= 1);
  assert.equal(await wall.page.locator(".tl-marker text").first().textContent(), "browser-test");

  // Screen readers get the numbers as a table.
  const table = wall.page.getByRole("table", { name: /Votes per time bucket/ });
  const rows = await table.locator("tbody tr").count();
  assert.ok(rows >= 1, "a row per bucket with votes");
  const summed = await table.locator("tbody tr").evaluateAll((trs) => trs.reduce((s, tr) => s + Number(tr.children[2].textContent), 0));
  assert.equal(summed, 44);
  assert.equal(await wall.page.getByRole("img", { name: /Votes per 1-second bucket/ }).count(), 1);
  assert.deepEqual(await contrastFailures(wall.page, [".tl-heading", ".tl-legend li"]), [], "text contrast (WCAG AA)");

  for (const viewport of [{ width: 1920, height: 1080 }, { width: 1280, height: 720 }]) {
    await wall.page.setViewportSize(viewport);
    const { w, h } = await wall.page.evaluate(() => ({
      w: document.documentElement.scrollWidth,
      h: document.documentElement.scrollHeight,
    }));
    assert.ok(w <= viewport.width && h <= viewport.height, `timeline is ${w}x${h} at ${viewport.width}x${viewport.height}`);
  }
  await wall.page.setViewportSize({ width: 1920, height: 1080 });
  await wall.page.evaluate(() => document.fonts.ready);
  await wall.page.screenshot({ path: join(SHOTS, "timeline.png") });
  // Between talks: the next session starts with a clean slate.
  assert.equal((await reset({ referralCache: true })).status, 200);
});

test("a vote whose answer was lost is retried with the same Idempotency-Key and counted once", async () => {
  const { page } = await open(SMALL_PHONE);
  // The no-JavaScript form gets a fresh vote_id with every page.
  await page.goto("/");
  const firstId = await page.locator("input[name=vote_id]").getAttribute("value");
  await page.reload();
  const secondId = await page.locator("input[name=vote_id]").getAttribute("value");
  assert.match(firstId, /^[0-9a-f]{32}$/);
  assert.notEqual(firstId, secondId);

  // The first attempt reaches the server and is stored, but the phone never
  // sees the answer: the network answers 503 instead (a proxy timing out).
  const keys = [];
  await page.route("**/vote", async (route) => {
    keys.push(route.request().headers()["idempotency-key"]);
    const response = await route.fetch();
    if (keys.length === 1) {
      await route.fulfill({ status: 503, contentType: "application/json", body: '{"detail":"Gateway timed out"}' });
    } else {
      await route.fulfill({ response });
    }
  });
  const before = await total();
  await page.getByRole("button", { name: LABELS.print }).tap();
  await page.getByRole("alertdialog").waitFor({ timeout: WAIT });
  assert.equal(await total(), before + 1, "the lost attempt was stored");

  const retried = page.waitForResponse((r) => r.url().endsWith("/vote"));
  await page.getByRole("button", { name: "Try again" }).tap();
  const answer = await retried;
  assert.equal(answer.status(), 200);
  assert.equal(answer.headers()["idempotent-replayed"], "true");
  await page.getByRole("heading", { name: "Vote counted!" }).waitFor({ timeout: WAIT });
  assert.equal(keys.length, 2);
  assert.match(keys[0], /^[0-9a-f]{32}$/);
  assert.equal(keys[1], keys[0], "Try again reuses the key");
  assert.equal(await total(), before + 1, "counted once");

  // The next vote the person casts is a new vote with a new key.
  await page.getByRole("button", { name: "Vote again" }).tap();
  await page.getByRole("button", { name: LABELS.stare }).tap();
  await page.getByRole("heading", { name: "Vote counted!" }).waitFor({ timeout: WAIT });
  assert.equal(keys.length, 3);
  assert.notEqual(keys[2], keys[0]);
  assert.equal(await total(), before + 2);
  assert.deepEqual(problems, [], "console errors and page errors");
});

test("results page: a 503 on /stream (screen budget full) is waited out as Retry-After says, then the page goes live", async () => {
  const { page } = await open(PROJECTOR);
  const attempts = [];
  let gets = 0;
  // The screen budget is full for the first two tries: they and the page's
  // HEAD probes after them hear 503 with Retry-After: 2.
  await page.route("**/stream", async (route) => {
    const method = route.request().method();
    attempts.push({ method, at: Date.now() });
    if (method === "GET") gets += 1;
    if (gets > 2) return route.continue();
    return route.fulfill({
      status: 503,
      headers: { "retry-after": "2", "content-type": "application/json" },
      body: '{"detail":"Too many screens connected, retry later"}',
    });
  });
  await page.goto("/results");
  await page.locator("#live", { hasText: "live" }).waitFor({ timeout: WAIT });
  const tries = attempts.filter((a) => a.method === "GET");
  assert.equal(tries.length, 3, `three tries: ${JSON.stringify(attempts)}`);
  assert.ok(attempts.some((a) => a.method === "HEAD"), "the page asked HEAD /stream why");
  for (let i = 1; i < tries.length; i++) {
    const waited = tries[i].at - tries[i - 1].at;
    assert.ok(waited >= 2000, `try ${i + 1} waited out Retry-After: ${waited} ms`);
  }
  assert.equal(await page.locator("#connection").isHidden(), true);
  const before = (await counts()).ai.count;
  assert.equal((await vote("ai")).status, 200);
  await page.waitForFunction(
    (n) => document.querySelector('li[data-choice="ai"]').dataset.count === String(n),
    before + 1,
    { timeout: WAIT },
  );
});

test("a phone's first visit to / transfers at most 36 KB (cold cache, compressed text assets)", async () => {
  const { page } = await open(PHONE);
  const responses = [];
  page.on("response", (r) => responses.push(r));
  await page.goto("/", { waitUntil: "load" });
  await page.evaluate(() => document.fonts.ready);
  let bytes = 0;
  const seen = [];
  for (const r of responses) {
    const sizes = await r.request().sizes();
    bytes += sizes.responseHeadersSize + sizes.responseBodySize;
    seen.push(`${new URL(r.url()).pathname} ${sizes.responseBodySize}`);
  }
  assert.ok(responses.length >= 5, `page, stylesheet, script, font, images: ${seen.join(", ")}`);
  console.log(`first visit to /: ${bytes} bytes (${seen.join(", ")})`);
  assert.ok(bytes <= 36000, `first visit transferred ${bytes} bytes: ${seen.join(", ")}`);
  const css = responses.find((r) => r.url().includes("/static/app."));
  assert.equal(await css.headerValue("content-encoding"), "gzip");
  assert.match(await css.headerValue("cache-control"), /immutable/);
});

test("one vote per phone: the page says what this phone voted, a tap changes it, with and without JavaScript", async () => {
  const deviceCounts = async () => (await (await fetch(DEVICE + "/votes")).json());
  const start = await deviceCounts();
  const youVoted = (label) => `You voted: ${label} — tap another to change`;

  const { page } = await open({ ...SMALL_PHONE, baseURL: DEVICE });
  await page.goto("/");
  assert.equal(await page.locator("#you-voted").isHidden(), true, "no vote yet: nothing said");
  await page.getByRole("button", { name: LABELS.print }).tap();
  await page.getByRole("heading", { name: "Vote counted!" }).waitFor({ timeout: WAIT });
  await page.getByRole("button", { name: "Change my vote" }).tap();
  await page.locator("#you-voted", { hasText: youVoted(LABELS.print) }).waitFor({ timeout: WAIT });
  await page.getByRole("button", { name: LABELS.ai }).tap();
  await page.getByRole("heading", { name: "Vote changed!" }).waitFor({ timeout: WAIT });
  assert.match(await page.locator("#vote-status").textContent(), /Vote changed: Ask an AI/);
  // A reload asks the server, which reads the cookie.
  await page.reload();
  await page.locator("#you-voted", { hasText: youVoted(LABELS.ai) }).waitFor({ timeout: WAIT });
  assert.deepEqual(await contrastFailures(page, ["#you-voted", "#you-voted strong"]), []);
  let now = await deviceCounts();
  assert.equal(now.print.count, start.print.count, "the change took print's vote back");
  assert.equal(now.ai.count, start.ai.count + 1);

  // Without JavaScript: the form posts, 303 back to the page, which says it.
  const plain = await open({ ...SMALL_PHONE, baseURL: DEVICE, javaScriptEnabled: false });
  await plain.page.goto("/");
  for (const key of ["stare", "restart"]) {
    const posted = plain.page.waitForResponse((r) => r.request().method() === "POST" && r.url().endsWith("/vote"));
    await plain.page.getByRole("button", { name: LABELS[key] }).tap();
    assert.equal((await posted).status(), 303);
    await plain.page.locator("#you-voted", { hasText: youVoted(LABELS[key]) }).waitFor({ timeout: WAIT });
    assert.equal(new URL(plain.page.url()).pathname, "/");
  }
  assert.deepEqual(await contrastFailures(plain.page, ["#you-voted", "#you-voted strong"]), []);
  now = await deviceCounts();
  assert.equal(now.stare.count, start.stare.count, "the second tap moved the first");
  assert.equal(now.restart.count, start.restart.count + 1);
  const sum = (c) => Object.values(c).reduce((s, e) => s + e.count, 0);
  assert.equal(sum(now), sum(start) + 2, "two phones, two votes");
});

test("the projector's seat: /admin's link carries a screen ticket that the results page passes on to every /stream request", async () => {
  const { page } = await open({ ...PROJECTOR, baseURL: DEVICE });
  await page.goto("/admin");
  const link = page.getByRole("link", { name: "Projector: live results" });
  assert.match(await link.getAttribute("href"), /^\/results\?screen=screen\.\d+\.[0-9a-f]{64}$/);
  const timeline = await page.getByRole("link", { name: "Incident timeline" }).getAttribute("href");
  assert.match(timeline, /^\/timeline\?screen=screen\./);

  // The first stream is refused (as with a full anonymous share), so the
  // page also asks HEAD before it reconnects: both carry the ticket.
  const streams = [];
  let gets = 0;
  // Every /stream request, with or without a query: one without the ticket fails below.
  await page.route((url) => url.pathname === "/stream", async (route) => {
    const req = route.request();
    streams.push({ method: req.method(), screen: new URL(req.url()).searchParams.get("screen") });
    if (req.method() === "GET" && ++gets === 1) {
      return route.fulfill({
        status: 503,
        headers: { "retry-after": "1", "content-type": "application/json" },
        body: '{"detail":"Too many screens connected, retry later"}',
      });
    }
    return route.continue();
  });
  await link.click();
  await page.locator("#live", { hasText: "live" }).waitFor({ timeout: WAIT });
  const fresh = await page.evaluate(() => document.body.dataset.screen);
  assert.match(fresh, /^screen\.\d+\.[0-9a-f]{64}$/);
  assert.equal(new URL(page.url()).searchParams.get("screen"), fresh, "a reload presents the fresh ticket");
  assert.ok(streams.some((s) => s.method === "HEAD"), `HEAD before the reconnect: ${JSON.stringify(streams)}`);
  assert.ok(streams.length >= 3 && streams.every((s) => s.screen === fresh), JSON.stringify(streams));
});

// Last: what every test above left behind.
test("no page requested anything from another origin, broke the CSP, threw, or failed to load a resource", () => {
  assert.deepEqual(foreign, [], "requests that left the origin");
  assert.deepEqual(problems, [], "console errors and page errors");
  assert.deepEqual(failedLoads, [], "failed loads of the app's own origin");
});

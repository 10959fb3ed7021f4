// Browser checks of herald's pages, driven by tests/browser.rs against the
// real binary: Debian's Chromium through playwright-core, no browser
// download. Usage: node run.mjs <scenario> <base-url> <screenshot-dir>
// Prints what it measured as one JSON line; any failed check throws (exit 1).
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [scenario, base, shots] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.HERALD_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // Root in a sandboxless container, on a machine with no outside network.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});

function check(ok, message) {
  if (!ok) throw new Error(message);
}

// The number on the overview's tile for `phase`.
async function phaseCount(page, phase) {
  const text = await page.locator(`#phases li[data-phase="${phase}"] .n`).textContent({ timeout: 2000 }).catch(() => "0");
  return Number(text);
}

async function waitFor(what, timeoutMs, probe) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// The lowest WCAG contrast ratio of any visible text on the page against
// the background it is drawn on (the nearest ancestor with one), with the
// element it was found on. Disabled controls are exempt (WCAG 1.4.3).
async function lowestContrast(page) {
  return page.evaluate(() => {
    const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => {
      const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const background = (el) => {
      for (let n = el; n; n = n.parentElement) {
        const c = rgb(getComputedStyle(n).backgroundColor);
        if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
      }
      return [255, 255, 255];
    };
    let worst = { ratio: Infinity, where: "" };
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let t = walker.nextNode(); t; t = walker.nextNode()) {
      const el = t.parentElement;
      if (!t.textContent.trim() || !el || el.closest("script, style, [hidden], .visually-hidden, :disabled")) continue;
      if (!el.getClientRects().length) continue;
      const fg = lum(rgb(getComputedStyle(el).color).slice(0, 3));
      const bg = lum(background(el));
      const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
      if (ratio < worst.ratio) worst = { ratio, where: el.tagName + "." + el.className + ": " + t.textContent.trim().slice(0, 40) };
    }
    return worst;
  });
}

// Text contrast of the page as it is, in the light and the dark scheme.
async function contrastInBothSchemes(page, name) {
  const seen = {};
  for (const scheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme: scheme, reducedMotion: "reduce" });
    const worst = await lowestContrast(page);
    check(worst.ratio >= 4.5, `${name} (${scheme}): contrast ${worst.ratio.toFixed(2)} < 4.5 at ${worst.where}`);
    seen[scheme] = Number(worst.ratio.toFixed(2));
  }
  await page.emulateMedia({ colorScheme: "light", reducedMotion: "no-preference" });
  return seen;
}

async function demo() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const opened = Date.now();
  await page.goto(base + "/");
  // The overview: running and completed tasks of the demo within 10 s.
  await waitFor("non-zero running and completed counts", 10000, async () =>
    (await phaseCount(page, "running")) > 0 && (await phaseCount(page, "completed")) > 0);
  const countsAfterMs = Date.now() - opened;
  check(await page.locator("header").count() === 1 && await page.locator("main").count() === 1, "landmarks: header and main");
  check(await page.getByRole("navigation", { name: "Web channels" }).getByRole("link", { name: "#main" }).count() === 1,
    "the web channel is linked from the overview");
  check(await page.getByRole("table").count() === 2, "the runs and delivery-health tables");
  check(await page.locator('#channels tbody tr[data-channel="main"]').count() === 1, "the main channel's health row");
  // The live status says so once the stream is open.
  await waitFor("the live indicator", 5000, async () => (await page.locator("#live").textContent()) === "live");
  await page.screenshot({ path: join(shots, "overview.png"), fullPage: true });
  // Narrow to the demo's run through the labelled select: the URL follows.
  const run = await page.locator("#runs tbody tr[data-run]").first().getAttribute("data-run");
  await page.getByLabel("Run").selectOption(run);
  await waitFor("the run in the URL", 5000, async () => new URL(page.url()).searchParams.get("run") === run);
  await waitFor("the narrowed counts", 5000, async () => (await phaseCount(page, "running")) > 0);
  await page.emulateMedia({ colorScheme: "dark" });
  await page.screenshot({ path: join(shots, "overview-dark.png"), fullPage: true });
  const overviewContrast = await contrastInBothSchemes(page, "overview");

  // The channel page: a live card is edited in place when its task moves.
  await page.emulateMedia({ colorScheme: "light" });
  await page.goto(base + "/channels/main");
  const card = await waitFor("a live card", 10000, async () => {
    const handle = await page.$('#messages article.progress');
    return handle || null;
  });
  const before = await card.evaluate((el) => { el.dataset.marked = "yes"; return { id: el.dataset.id, state: el.dataset.state }; });
  // The page re-reads the channel when its stream opens or falls behind: a
  // card on screen is kept and updated, never rebuilt under the reader.
  await page.evaluate(() => reload());
  check(await card.evaluate((el) => el.isConnected && el.dataset.marked === "yes"), "a reload rebuilt the card");
  const after = await waitFor("the card's task to move", 15000, async () => {
    const now = await card.evaluate((el) => ({ connected: el.isConnected, marked: el.dataset.marked, id: el.dataset.id, state: el.dataset.state }));
    check(now.connected, "the card was replaced, not edited in place");
    return now.state !== before.state ? now : null;
  });
  check(after.marked === "yes" && after.id === before.id, "same element, same message");
  const sameId = await page.locator(`#messages article[data-id="${before.id}"]`).count();
  check(sameId === 1, "one card per message, got " + sameId);
  const times = await page.locator("#messages time").allTextContents();
  check(times.length > 0 && times.every((t) => /ago$|^just now$/.test(t)), "relative times: " + times.slice(0, 3));
  // Reported only: the cap is the `cap` scenario's check.
  const cards = await page.locator("#messages article").count();
  await page.screenshot({ path: join(shots, "channel.png") });
  const channelContrast = await contrastInBothSchemes(page, "channel page");
  check(errors.length === 0, "page errors: " + errors.join("; "));
  return { countsAfterMs, editedFrom: before.state, editedTo: after.state, cards, overviewContrast, channelContrast };
}

async function replay() {
  const user = process.env.HERALD_READ_TOKEN;
  const context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    httpCredentials: { username: "operator", password: user },
  });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(base + "/");
  const row = page.locator('#channels tbody tr[data-channel="hook"]');
  await waitFor("the failed receipt in the health table", 10000, async () =>
    (await row.locator("td").nth(2).textContent().catch(() => "")) === "1");
  const error = await row.locator(".error").textContent();
  check(error.length > 0, "the last error is shown");
  await page.screenshot({ path: join(shots, "overview-failed.png"), fullPage: true });
  const contrast = await contrastInBothSchemes(page, "overview with a failure");
  // Logged in with a read token: replaying asks for a source token.
  await page.getByRole("button", { name: "Replay the failed receipts of hook" }).click();
  await page.getByLabel("Replaying needs a source token:").fill(process.env.HERALD_SOURCE_TOKEN);
  await page.getByRole("button", { name: "Use it" }).click();
  await waitFor("the replay notice", 5000, async () =>
    /Replaying 1 failed receipt of hook/.test(await page.locator("#notice").textContent()));
  // The stream shows the receipt delivered: nothing failed, nothing pending.
  await waitFor("the receipt delivered", 10000, async () =>
    (await row.locator("td").nth(2).textContent()) === "0" && (await row.locator("td").nth(1).textContent()) === "0");
  await page.screenshot({ path: join(shots, "overview-replayed.png"), fullPage: true });
  check(errors.length === 0, "page errors: " + errors.join("; "));
  return { replayed: true, lastError: error, contrast };
}

// A channel with more messages than a page keeps: the newest 500 cards,
// and still 500 as new ones stream in, the newest first.
async function cap() {
  const context = await browser.newContext({ viewport: { width: 1000, height: 800 } });
  const page = await context.newPage();
  await page.goto(base + "/channels/main");
  await waitFor("the newest 500 cards", 10000, async () =>
    (await page.locator("#messages article").count()) === 500);
  const events = [];
  for (let n = 0; n < 30; n++) {
    events.push({ seq: 1, run_id: "late", worker_id: "w", task_id: "late-" + n, state: "completed",
      timestamp: new Date().toISOString(), summary: "late " + n });
  }
  const res = await page.request.post(base + "/v1/events", {
    headers: { Authorization: "Bearer " + process.env.HERALD_SOURCE_TOKEN }, data: events });
  check(res.status() === 202, "events accepted: " + res.status());
  // The 30 are delivered concurrently, in no set order: all of them on top.
  await waitFor("the late notifications on top", 10000, async () => {
    const top = await page.locator("#messages article").evaluateAll((els) => els.slice(0, 30).map((el) => el.textContent));
    return top.filter((text) => /late-\d+/.test(text)).length === 30;
  });
  const cards = await page.locator("#messages article").count();
  check(cards === 500, "still 500 cards, got " + cards);
  return { cards };
}

try {
  const scenarios = { demo, replay, cap };
  check(scenarios[scenario], "no scenario " + scenario);
  const result = await scenarios[scenario]();
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}

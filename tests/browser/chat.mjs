// The chat page in a real browser: Debian's chromium driven by playwright-core against a
// running Colloquy on the mock provider (started by tests/browser/run.sh). Environment:
// COLLOQUY_BASE_URL, ARTIFACTS (where screenshots go).
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const base = process.env.COLLOQUY_BASE_URL;
const artifacts = process.env.ARTIFACTS;
let browser;
let context;
let page;
const problems = []; // console errors, CSP violations, failed scripts

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
  context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  page = await context.newPage();
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(m.text());
  });
  page.on("pageerror", (e) => problems.push(String(e)));
});

after(async () => {
  await browser?.close();
});

test("sign in with the development token", async () => {
  await page.goto(`${base}/`);
  const csp = (await page.request.get(`${base}/`)).headers()["content-security-policy"];
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline/);
  await page.getByRole("button", { name: "Use a development token" }).click();
  await page.getByRole("combobox", { name: "Specialist" }).waitFor();
  assert.ok((await page.locator("#specialist option").count()) >= 3);
  // The message box has the focus, ready to type (polled: the page may still be loading
  // the conversation list when the select appears).
  await page.waitForFunction(() => document.activeElement?.id === "composer-input", null, {
    timeout: 5000,
  });
});

test("an answer streams in over several frames", async () => {
  // Record every length the answer's text takes, as the browser renders it.
  await page.evaluate(() => {
    window.lengths = [];
    new MutationObserver(() => {
      const text = document.querySelector(".msg.assistant:last-of-type .text");
      if (text && text.textContent.length !== window.lengths.at(-1)) {
        window.lengths.push(text.textContent.length);
      }
    }).observe(document.getElementById("messages"), {
      subtree: true,
      childList: true,
      characterData: true,
    });
  });
  const box = page.getByRole("textbox", { name: "Message" });
  await box.fill("Tell me about pelican migration patterns");
  await box.press("Enter");
  const meta = page.locator(".msg.assistant .meta").last();
  await meta.waitFor();
  assert.match(await meta.textContent(), /\d+ in \/ \d+ out tokens .* ms/);
  const answer = await page.locator(".msg.assistant .text").last().textContent();
  assert.equal(answer, "[mock] You said: Tell me about pelican migration patterns");
  const lengths = await page.evaluate(() => window.lengths);
  assert.ok(lengths.length >= 4, `the text grew in steps: ${lengths}`);
  for (let i = 1; i < lengths.length; i++) assert.ok(lengths[i] > lengths[i - 1], `${lengths}`);
  assert.ok(lengths[0] < answer.length, "not all at once");
  // Screen readers hear the finished answer once, not every token.
  assert.equal(await page.locator("#announcer").textContent(), `Answer: ${answer}`);
  await page.screenshot({ path: `${artifacts}/chat.png`, fullPage: true });
});

test("after a reload the conversation is in the list and opens", async () => {
  await page.reload();
  const item = page.locator("#conversations button").first();
  await item.waitFor();
  await item.click();
  await page.locator(".msg.user", { hasText: "pelican migration" }).waitFor();
  await page.locator(".msg.assistant", { hasText: "[mock] You said" }).waitFor();
  // The conversation keeps its specialist.
  assert.equal(await page.locator("#specialist").inputValue(), "general");
  assert.ok(await page.locator("#specialist").isDisabled());
});

test("search finds the message", async () => {
  const search = page.getByRole("searchbox", { name: "Search your messages" });
  await search.fill("pelican");
  await search.press("Enter");
  const hit = page.locator("#search-results button").first();
  await hit.waitFor();
  assert.equal(await hit.locator("mark").first().textContent(), "pelican");
  await hit.click();
  await page.locator(".msg.user", { hasText: "pelican migration" }).waitFor();
});

test("an attached file reaches the answer", async () => {
  await page.locator("#file").setInputFiles({
    name: "notes.txt",
    mimeType: "text/plain",
    buffer: Buffer.from("The secret word is marmalade.\n"),
  });
  await page.locator("#attachments li", { hasText: "notes.txt" }).waitFor();
  const box = page.getByRole("textbox", { name: "Message" });
  await box.fill("What is in my file?");
  await box.press("Enter");
  // The mock echoes the prompt it was sent: the file's text is in it.
  await page.locator(".msg.assistant .text", { hasText: "marmalade" }).waitFor();
  await page.locator(".msg.assistant .meta").nth(-1).waitFor();
  await page.waitForFunction(() => !document.querySelector("[aria-busy=true]"));
  assert.equal(await page.locator("#attachments li").count(), 0, "sent files are cleared");
});

test("a lost connection is picked up where it left off", async () => {
  // The stream's connection ends after its first delta (the real response, cut short):
  // the page asks for the rest from the last event's id and shows the whole answer.
  const resumed = [];
  page.on("request", (r) => {
    if (/\/v1\/chat\/stream\/[0-9a-f-]+$/.test(r.url())) resumed.push(r.headers()["last-event-id"]);
  });
  let firstId;
  await page.route("**/v1/chat/stream", async (route) => {
    const response = await route.fetch();
    const blocks = (await response.text()).split("\n\n");
    firstId = /^id: (\d+)$/m.exec(blocks[1])[1];
    await route.fulfill({ response, body: blocks.slice(0, 2).join("\n\n") + "\n\n" });
  });
  const box = page.getByRole("textbox", { name: "Message" });
  await box.fill("Do not lose me");
  await box.press("Enter");
  await page.locator(".msg.assistant", { hasText: "Do not lose me" }).locator(".meta").waitFor();
  await page.unroute("**/v1/chat/stream");
  assert.equal(
    await page.locator(".msg.assistant .text").last().textContent(),
    "[mock] You said: Do not lose me",
  );
  assert.ok(Number(firstId) > 0, `the cut came after some text (${firstId})`);
  assert.deepEqual(resumed, [firstId], "picked up once, from the last event received");
  assert.equal(await page.locator(".msg.failed").count(), 0);
});

test("an error is shown, not swallowed", async () => {
  // run.sh gives users a chat bucket of 4: one more call spends it, the next is refused.
  const box = page.getByRole("textbox", { name: "Message" });
  for (const text of ["third"]) {
    await box.fill(text);
    await box.press("Enter");
    await page.locator(".msg.assistant .meta").nth(-1).waitFor();
    await page.waitForFunction(() => !document.querySelector("[aria-busy=true]"));
  }
  await box.fill("one too many");
  await box.press("Enter");
  const error = page.locator(".msg.failed .error").last();
  await error.waitFor();
  assert.match(await error.textContent(), /Rate limited.*Try again in \d+ s/);
  assert.match(await page.locator("#status").textContent(), /Rate limited/);
  await page.screenshot({ path: `${artifacts}/error.png`, fullPage: true });
});

test("usable at phone width, every control labelled", async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  const { overflow, wide } = await page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    return {
      overflow: document.documentElement.scrollWidth - width,
      wide: [...document.querySelectorAll("body *")]
        .filter((el) => el.getBoundingClientRect().right > width + 1)
        .map((el) => el.id || el.className || el.nodeName),
    };
  });
  assert.ok(overflow <= 0, `no sideways scrolling (${overflow}px): ${wide}`);
  const toggle = page.getByRole("button", { name: "Conversations" });
  await toggle.click();
  assert.equal(await toggle.getAttribute("aria-expanded"), "true");
  await page.locator("#conversations button").first().waitFor({ state: "visible" });
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll("input, select, textarea, button")]
      .filter((el) => el.offsetParent !== null)
      .filter((el) => !(el.labels?.length || el.getAttribute("aria-label") || el.textContent.trim()))
      .map((el) => el.id || el.outerHTML.slice(0, 60)),
  );
  assert.deepEqual(unlabelled, []);
  await page.screenshot({ path: `${artifacts}/phone.png` });
});

test("a pasted token signs in; older messages load on scrolling up", async () => {
  const other = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  other.on("pageerror", (e) => problems.push(String(e)));
  await other.goto(`${base}/`);
  await other.getByLabel("Token or API key").fill(process.env.PAGER_TOKEN);
  await other.getByRole("button", { name: "Sign in", exact: true }).click();
  await other.locator("#conversations button", { hasText: "A long one" }).click();
  // The newest page: 30 of the 40 messages, the newest at the bottom, in view.
  await other.locator(".msg.user .text", { hasText: /^Message number 20$/ }).waitFor();
  assert.equal(await other.locator(".msg").count(), 30);
  assert.ok(await other.locator(".msg").last().isVisible());
  // Scrolling to the top brings the older page in above, keeping the reader's place.
  await other.locator("#messages").evaluate((box) => {
    box.scrollTop = 0;
  });
  await other.locator(".msg.user .text", { hasText: /^Message number 1$/ }).waitFor();
  assert.equal(await other.locator(".msg").count(), 40);
  assert.ok(await other.locator("#older").isHidden(), "no more pages");
  const top = await other.locator("#messages").evaluate((box) => box.scrollTop);
  assert.ok(top > 0, "the reader stays where they were, not at the new top");
  await other.close();
});

test("no console errors and no CSP violations", () => {
  // The refused call above logs a failed resource load; nothing else may.
  const unexpected = problems.filter((p) => !/status of 429/.test(p));
  assert.deepEqual(unexpected, []);
});

// The official OpenAI npm package against a running Colloquy (started by tests/sdk/run.sh):
// the README's JavaScript snippet, checked. Environment: COLLOQUY_BASE_URL, SDK_KEY (a
// Colloquy API key) and LIMITED_KEY (a key whose chat bucket holds 2).
import { test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";

const baseURL = `${process.env.COLLOQUY_BASE_URL}/v1`;
const client = new OpenAI({ baseURL, apiKey: process.env.SDK_KEY });

test("chat", async () => {
  const reply = await client.chat.completions.create({
    model: "general",
    messages: [{ role: "user", content: "Hello from node" }],
  });
  assert.equal(reply.choices[0].message.content, "[mock] You said: Hello from node");
  assert.equal(reply.choices[0].finish_reason, "stop");
  assert.ok(reply.usage.total_tokens > 0);
});

test("stream with usage", async () => {
  const stream = await client.chat.completions.create({
    model: "analyst",
    messages: [{ role: "user", content: "Stream me from node" }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  let pieces = 0;
  let usage = null;
  for await (const chunk of stream) {
    const content = chunk.choices[0]?.delta?.content;
    if (content) {
      text += content;
      pieces += 1;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(text, "[mock] You said: Stream me from node");
  assert.ok(pieces > 3, `${pieces} deltas`);
  assert.ok(usage && usage.completion_tokens > 0, "the usage chunk");
});

test("models", async () => {
  const ids = [];
  for await (const model of client.models.list()) ids.push(model.id);
  assert.deepEqual(ids.slice(0, 3), ["general", "analyst", "writer"]);
});

test("a bad key is an AuthenticationError", async () => {
  const bad = new OpenAI({ baseURL, apiKey: "ck_not_a_key_of_this_server", maxRetries: 0 });
  await assert.rejects(
    bad.chat.completions.create({ model: "general", messages: [{ role: "user", content: "x" }] }),
    (err) => err instanceof OpenAI.AuthenticationError && err.code === "invalid_api_key",
  );
});

test("an empty bucket is a RateLimitError", async () => {
  const limited = new OpenAI({ baseURL, apiKey: process.env.LIMITED_KEY, maxRetries: 0 });
  const ask = () =>
    limited.chat.completions.create({ model: "general", messages: [{ role: "user", content: "x" }] });
  await ask();
  await ask();
  await assert.rejects(
    ask(),
    (err) => err instanceof OpenAI.RateLimitError && err.code === "rate_limit_exceeded",
  );
});

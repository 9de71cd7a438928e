"""The official OpenAI Python SDK against a running Colloquy (started by tests/sdk/run.sh).

Nothing here knows about Colloquy beyond the base URL and a Colloquy API key: that is the
point. Environment: COLLOQUY_BASE_URL (http://127.0.0.1:PORT), USER_TOKEN and ADMIN_TOKEN
(development JWTs, used only to make API keys and set a budget).
"""

import json
import os
import time
import unittest
import urllib.request

import openai
from openai import OpenAI

BASE = os.environ["COLLOQUY_BASE_URL"]


def call(method: str, path: str, token: str, body: dict) -> dict:
    """A plain JSON call to Colloquy's own API (for setup only)."""
    request = urllib.request.Request(
        f"{BASE}{path}",
        method=method,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def make_key(token: str, name: str, role: str) -> str:
    return call("POST", "/v1/api-keys", token, {"name": name, "role": role})["secret"]


def client(key: str, **kwargs) -> OpenAI:
    # The only change from talking to OpenAI: the base URL and the key.
    return OpenAI(base_url=f"{BASE}/v1", api_key=key, **kwargs)


class OpenAiSdk(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.key = make_key(os.environ["USER_TOKEN"], "sdk-test", "user")
        cls.sdk = client(cls.key)

    def test_chat(self):
        completion = self.sdk.chat.completions.create(
            model="general",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hello from the SDK"},
            ],
            temperature=0.3,
            max_completion_tokens=200,
            user="end-user-1",
        )
        self.assertTrue(completion.id.startswith("chatcmpl-"))
        self.assertEqual(completion.object, "chat.completion")
        self.assertEqual(len(completion.choices), 1)
        choice = completion.choices[0]
        self.assertEqual(choice.message.role, "assistant")
        self.assertEqual(choice.message.content, "[mock] You said: Hello from the SDK")
        self.assertEqual(choice.finish_reason, "stop")
        self.assertGreater(completion.usage.prompt_tokens, 0)
        self.assertEqual(
            completion.usage.total_tokens,
            completion.usage.prompt_tokens + completion.usage.completion_tokens,
        )
        # The SDK reads the request id from our X-Request-Id header.
        self.assertTrue(completion._request_id)

    def test_stream_with_usage(self):
        stream = self.sdk.chat.completions.create(
            model="analyst",
            messages=[{"role": "user", "content": "Stream this to me please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces, finish, usage, arrivals = [], None, None, []
        for chunk in stream:
            arrivals.append(time.monotonic())
            if chunk.usage is not None:
                usage = chunk.usage
                self.assertEqual(chunk.choices, [])
                continue
            delta = chunk.choices[0].delta
            if delta.content:
                pieces.append(delta.content)
            if chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
        self.assertEqual("".join(pieces), "[mock] You said: Stream this to me please")
        self.assertGreater(len(pieces), 3, "several deltas, not one")
        # Token by token: the chunks arrived spread over time, not in one burst.
        self.assertGreater(arrivals[-1] - arrivals[0], 0.05)
        self.assertEqual(finish, "stop")
        self.assertIsNotNone(usage, "the usage chunk")
        self.assertGreater(usage.completion_tokens, 0)

    def test_models_list(self):
        ids = [m.id for m in self.sdk.models.list()]
        self.assertEqual(ids[:3], ["general", "analyst", "writer"])
        self.assertIn("mock/echo", ids)
        self.assertEqual(self.sdk.models.retrieve("general").owned_by, "colloquy")
        with self.assertRaises(openai.NotFoundError) as caught:
            self.sdk.models.retrieve("no-such-model")
        self.assertEqual(caught.exception.code, "model_not_found")

    def test_direct_model(self):
        completion = self.sdk.chat.completions.create(
            model="mock/echo", messages=[{"role": "user", "content": "Direct"}]
        )
        self.assertEqual(completion.choices[0].message.content, "[mock] You said: Direct")

    def test_bad_key_is_authentication_error(self):
        bad = client("ck_this_is_not_a_key_of_this_server_000000000000", max_retries=0)
        with self.assertRaises(openai.AuthenticationError) as caught:
            bad.chat.completions.create(
                model="general", messages=[{"role": "user", "content": "x"}]
            )
        self.assertEqual(caught.exception.status_code, 401)
        self.assertEqual(caught.exception.code, "invalid_api_key")

    def test_bad_parameter_is_bad_request(self):
        with self.assertRaises(openai.BadRequestError) as caught:
            self.sdk.chat.completions.create(
                model="general",
                messages=[{"role": "user", "content": "x"}],
                n=2,
            )
        self.assertEqual(caught.exception.param, "n")
        self.assertEqual(caught.exception.code, "unsupported_parameter")

    def test_rate_limit_is_rate_limit_error(self):
        # run.sh gives admins a chat bucket of 2: the third call in a row is refused.
        key = make_key(os.environ["ADMIN_TOKEN"], "sdk-limited", "admin")
        limited = client(key, max_retries=0)
        ask = {"model": "general", "messages": [{"role": "user", "content": "x"}]}
        limited.chat.completions.create(**ask)
        limited.chat.completions.create(**ask)
        with self.assertRaises(openai.RateLimitError) as caught:
            limited.chat.completions.create(**ask)
        self.assertEqual(caught.exception.status_code, 429)
        self.assertEqual(caught.exception.code, "rate_limit_exceeded")
        self.assertIn("retry-after", caught.exception.response.headers)

    def test_budget_is_a_rate_limit_error_not_retried(self):
        admin = os.environ["ADMIN_TOKEN"]
        call("PUT", "/v1/admin/users/sdk-broke/budget", admin, {"monthly_nano_usd": 0})
        token = os.environ["BROKE_TOKEN"]
        # Default retries on: the SDK would retry a 429, but x-should-retry says no.
        broke = client(make_key(token, "sdk-broke", "user"))
        started = time.monotonic()
        with self.assertRaises(openai.RateLimitError) as caught:
            broke.chat.completions.create(
                model="general", messages=[{"role": "user", "content": "x"}]
            )
        self.assertEqual(caught.exception.code, "insufficient_quota")
        self.assertLess(time.monotonic() - started, 0.5, "not retried")


if __name__ == "__main__":
    unittest.main(verbosity=2)

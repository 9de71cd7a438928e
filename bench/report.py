#!/usr/bin/env python3
"""Renders bench/run.sh's raw figures (one JSON file per measurement) as the tables of
bench/RESULTS.md, replacing what lies between its generated-results markers."""

import json
import math
import sys
from pathlib import Path

BEGIN = "<!-- generated:begin (bench/run.sh writes this part) -->"
END = "<!-- generated:end -->"


def load(results: Path, name: str):
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def oha(results: Path, name: str):
    """rps, p50 ms, p99 ms and the share of non-2xx answers or errors of one oha run."""
    data = load(results, name)
    if data is None:
        return None
    summary = data["summary"]
    pct = data.get("latencyPercentiles", {})
    codes = data.get("statusCodeDistribution", {})
    # Requests still in flight when the run's time is up are cut by oha, not failed.
    errors = {k: n for k, n in data.get("errorDistribution", {}).items() if "deadline" not in k}
    total = sum(codes.values()) + sum(errors.values())
    ok = sum(n for code, n in codes.items() if str(code).startswith("2"))
    return {
        "rps": summary["requestsPerSec"],
        "p50": (pct.get("p50") or math.nan) * 1000,
        "p99": (pct.get("p99") or math.nan) * 1000,
        "failed": total - ok,
        "total": total,
    }


def ms(v):
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f} ms"


def num(v, unit=""):
    return "–" if v is None else f"{v:,.0f}{unit}"


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def verdict(ok):
    return "met" if ok else "**not met**"


def failures(*runs):
    bad = [f"{r['failed']} of {r['total']}" for r in runs if r and r.get("failed")]
    return "none" if not bad else ", ".join(bad)


def render(results: Path) -> str:
    m = load(results, "machine")
    out = []
    out.append(
        f"Run {m['date']} at commit `{m['commit']}` on {m['cores']} cores ({m['cpu']}), "
        f"{m['memory']}, Linux {m['kernel']}; {m['rustc']}, {m['oha']}, PostgreSQL "
        f"{m['postgres']}. The load tool, the mock upstream, Postgres and Colloquy share the "
        f"cores. Each scenario: {m.get('warmup', 2)} s of warm-up, then "
        f"{m['duration']} s measured; closed-loop scenarios use {m['concurrency']} connections."
    )
    out.append("")

    d_max, d_rate = oha(results, "direct-send-max"), oha(results, "direct-send-rate")
    d_ttft, d_smax = load(results, "direct-stream-ttft"), load(results, "direct-stream-max")
    rows = []
    targets = []
    for backend in ("postgres", "sqlite"):
        b_max, b_rate = oha(results, f"{backend}-send-max"), oha(results, f"{backend}-send-rate")
        conv = load(results, f"{backend}-send-conversation")
        ttft, smax = load(results, f"{backend}-stream-ttft"), load(results, f"{backend}-stream-max")
        idle = load(results, f"{backend}-idle")
        after = load(results, f"{backend}-after-load")
        rows.append((backend, b_max, b_rate, conv, ttft, smax, idle, after))

    out.append("### Requests and streams")
    out.append("")
    out.append("| Scenario | Direct to mock | Colloquy on Postgres | Colloquy on SQLite | Target |")
    out.append("|---|---|---|---|---|")

    def cells(fn):
        return " | ".join(fn(r) for r in rows)

    out.append(
        f"| Send, stateless: max throughput | {num(d_max['rps'], ' req/s')} | "
        + cells(lambda r: f"{num(r[1]['rps'], ' req/s')} ({100 * r[1]['rps'] / d_max['rps']:.0f}% of direct)")
        + " | ≥ 25% of direct |"
    )
    for r in rows:
        targets.append((f"stateless send throughput, {r[0]}", r[1]["rps"] / d_max["rps"] >= 0.25))
    out.append(
        f"| Send, stateless at {m['fixed_rate']:,} req/s: p50 / p99 | {ms(d_rate['p50'])} / {ms(d_rate['p99'])} | "
        + cells(lambda r: f"{ms(r[2]['p50'])} / {ms(r[2]['p99'])} (p99 +{r[2]['p99'] - d_rate['p99']:.2f} ms)")
        + " | added p99 ≤ 1 ms |"
    )
    for r in rows:
        targets.append((f"added p99 at {m['fixed_rate']} req/s, {r[0]}", r[2]["p99"] - d_rate["p99"] <= 1.0))
    out.append(
        f"| Send, with a conversation (history read, two messages appended): throughput, p50 / p99 | "
        f"{num(d_max['rps'], ' req/s')} (stateless direct) | "
        + cells(lambda r: f"{num(r[3]['per_sec'], ' req/s')} ({100 * r[3]['per_sec'] / d_max['rps']:.0f}%), "
                f"{ms(r[3]['p50_ms'])} / {ms(r[3]['p99_ms'])}")
        + " | – |"
    )
    out.append(
        f"| Stream at {m['stream_rate']} streams/s: time to first token p50 / p99 | "
        f"{ms(d_ttft['ttft_p50_ms'])} / {ms(d_ttft['ttft_p99_ms'])} | "
        + cells(lambda r: f"{ms(r[4]['ttft_p50_ms'])} / {ms(r[4]['ttft_p99_ms'])} "
                f"(p99 +{r[4]['ttft_p99_ms'] - d_ttft['ttft_p99_ms']:.2f} ms)")
        + " | added p99 ≤ 1 ms |"
    )
    for r in rows:
        targets.append((f"added time to first token p99, {r[0]}",
                        r[4]["ttft_p99_ms"] - d_ttft["ttft_p99_ms"] <= 1.0))
    out.append(
        f"| Stream: completed streams (16 tokens) at most | {num(d_smax['per_sec'], '/s')} | "
        + cells(lambda r: f"{num(r[5]['per_sec'], '/s')} ({100 * r[5]['per_sec'] / d_smax['per_sec']:.0f}%)")
        + " | – |"
    )
    out.append(
        "| Failed requests (non-2xx, errors, streams without their end) | "
        f"{failures(d_max, d_rate)}, {d_ttft['errors'] + d_smax['errors']} stream errors | "
        + cells(lambda r: f"{failures(r[1], r[2])}, {r[3]['errors']} conversation errors, "
                f"{r[4]['errors'] + r[5]['errors']} stream errors")
        + " | none |"
    )
    out.append(
        "| RSS at idle (just started) / after the scenarios above | – | "
        + cells(lambda r: f"{mib(r[6]['rss_kib'])} / {mib(r[7]['rss_kib'])}")
        + " | idle ≤ 30 MB |"
    )
    for r in rows:
        targets.append((f"idle RSS, {r[0]}", r[6]["rss_kib"] * 1024 <= 30_000_000))
    out.append("")

    out.append(f"### Slow streams held open (a token every 100 ms, {m['stream_secs']} s each; Colloquy on Postgres)")
    out.append("")
    out.append("| Run | Streams asked / completed / open at once | Errors | Colloquy RSS idle → peak (per stream) | Mock RSS idle → peak (per stream) | Colloquy per stream ÷ mock per stream |")
    out.append("|---|---|---|---|---|---|")
    direct = load(results, "direct-hold")

    def rss(run, name):
        r = run["rss"].get(name)
        if r is None:
            return "–", None
        return (f"{mib(r['idle_kib'])} → {mib(r['peak_kib'])} ({r['per_stream_kib']:.1f} KiB)", r["per_stream_kib"])

    mock_cell, _ = rss(direct, "mock")
    out.append(f"| Direct to mock | {direct['count']:,} / {direct['completed']:,} / {direct['max_open']:,} | {direct['errors']} | – | {mock_cell} | – |")
    run = load(results, "postgres-hold")
    if run is not None:
        c_cell, c_per = rss(run, "colloquy")
        k_cell, k_per = rss(run, "mock")
        ratio = c_per / k_per if c_per and k_per else math.nan
        out.append(f"| Through Colloquy | {run['count']:,} / {run['completed']:,} / {run['max_open']:,} | {run['errors']} | {c_cell} | {k_cell} | {ratio:.2f}× |")
        targets.append(("RSS per stream ≤ 2× mock's", ratio <= 2.0))
        targets.append(("no stream dropped", run["errors"] == 0 and run["completed"] == run["count"]))
    out.append("")
    out.extend(floor(results, m, d_max, d_rate, d_ttft))
    out.append("### History")
    out.append("")
    out.extend(history(results))
    out.append("### Targets")
    out.append("")
    for name, ok in targets:
        out.append(f"- {name}: {verdict(ok)}")
    out.append("")
    out.append(f"File limit of the run: {m['fd_limit']:,} descriptors per process.")
    return "\n".join(out)


def floor(results: Path, m, d_max, d_rate, d_ttft):
    """The floor table: the same scenarios through a bare axum + reqwest passthrough, the
    least a proxy on Colloquy's stack costs. Its shortfall is the stack's, not Colloquy's."""
    f_max, f_rate = oha(results, "floor-send-max"), oha(results, "floor-send-rate")
    f_ttft, f_hold = load(results, "floor-stream-ttft"), load(results, "floor-hold")
    if f_max is None:
        return []
    out = [
        "### The floor: a bare axum + reqwest passthrough",
        "",
        "bench/src/bin/floor-proxy.rs forwards each request to the mock and passes the answer "
        "back: no auth, no parsing, no database, no logs. It is the least any proxy built on "
        "Colloquy's stack can cost, measured in the same run.",
        "",
        "| Scenario | Direct to mock | Floor | Target (for Colloquy) |",
        "|---|---|---|---|",
        f"| Send: max throughput | {num(d_max['rps'], ' req/s')} | "
        f"{num(f_max['rps'], ' req/s')} ({100 * f_max['rps'] / d_max['rps']:.0f}% of direct) | ≥ 25% of direct |",
        f"| Send at {m['fixed_rate']:,} req/s: p50 / p99 | {ms(d_rate['p50'])} / {ms(d_rate['p99'])} | "
        f"{ms(f_rate['p50'])} / {ms(f_rate['p99'])} (p99 +{f_rate['p99'] - d_rate['p99']:.2f} ms) | added p99 ≤ 1 ms |",
    ]
    if f_ttft is not None:
        out.append(
            f"| Stream at {m['stream_rate']} streams/s: time to first token p50 / p99 | "
            f"{ms(d_ttft['ttft_p50_ms'])} / {ms(d_ttft['ttft_p99_ms'])} | "
            f"{ms(f_ttft['ttft_p50_ms'])} / {ms(f_ttft['ttft_p99_ms'])} "
            f"(p99 +{f_ttft['ttft_p99_ms'] - d_ttft['ttft_p99_ms']:.2f} ms) | added p99 ≤ 1 ms |"
        )
    if f_hold is not None:
        fl, mk = f_hold["rss"].get("floor"), f_hold["rss"].get("mock")
        if fl and mk:
            out.append(
                f"| {f_hold['count']:,} slow streams held: RSS per stream, floor and its mock | "
                f"{mk['per_stream_kib']:.1f} KiB (the mock) | {fl['per_stream_kib']:.1f} KiB "
                f"({fl['per_stream_kib'] / mk['per_stream_kib']:.2f}× the mock's), "
                f"{f_hold['completed']:,} of {f_hold['count']:,} completed | ≤ 2× the mock's |"
            )
    out.append("")
    return out


def history(results: Path):
    """The history table: sequential requests through Colloquy on Postgres (JWT, rate limits
    and the access log on), one connection, so each figure is one request's whole latency."""
    h = load(results, "history")
    if h is None:
        return ["Not run yet: `BENCH_ONLY=history bash bench/run.sh`."]
    out = [
        f"Postgres, {h['messages']:,} messages of one user: one conversation of "
        f"{h['long_conversation']:,} and 900 of 1,000 (seeded by bench/history.sql in "
        f"{h['seed_secs']} s). Sequential requests on one connection.",
        "",
        "| Request | Requests | p50 | p99 | Failed |",
        "|---|---|---|---|---|",
    ]
    rows = [
        ("page-newest", "Messages, newest page of 50 (`/messages?limit=50`)"),
        ("page-middle", "Messages, a page of 50 in the middle (`before=50001`)"),
        ("page-oldest", "Messages, the oldest page (`before=51`)"),
        ("open", "Open the conversation (`GET /v1/conversations/{id}`, with its newest 50)"),
        ("list", "Conversation list, first page of 50 of 901"),
        ("search-two-words", f"Search, two words ({h['hits_two_words']:,} hits), top 20"),
        ("search-one-word", f"Search, one word ({h['hits_one_word']:,} hits), top 20"),
        ("search-one-word-page2", "Search, one word, second page (cursor)"),
        ("search-every-message", f"Search, a word in every message ({h['messages']:,} hits), top 20"),
    ]
    for name, label in rows:
        r = oha(results, f"history-{name}")
        if r is None:
            continue
        out.append(f"| {label} | {r['total']:,} | {ms(r['p50'])} | {ms(r['p99'])} | {r['failed']} |")
    out.append("")
    return out


def main():
    results, target = Path(sys.argv[1]), Path(sys.argv[2])
    table = render(results)
    text = target.read_text() if target.exists() else f"# Benchmark results\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    target.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")


if __name__ == "__main__":
    main()

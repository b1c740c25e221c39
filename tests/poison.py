"""The poison suite: records production really sends that no store takes as they are, among valid traffic.

Each case says what must become of it: a verdict (the odd text is escaped and the verdict kept) or a
dead letter with its reason (the record is refused, its original bytes kept). Used by the `replay` tests
on SQLite and PostgreSQL and by the `run` test on Kafka.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shadowd.demo.traffic import generate_envelopes
from tests.helpers import write_config

BASELINE = "claude-opus-4-6"
REPLAYED = "opus-4-7"  # baseline and candidate both replayed
RECORDED = "recorded-sonnet"  # the baseline is the envelope's recorded response
ROLLOUTS = f"""
  - name: {REPLAYED}
    baseline: {BASELINE}
    candidate: claude-opus-4-7
    noise_check: false
  - name: {RECORDED}
    baseline: {BASELINE}
    candidate: claude-sonnet-4-6
    baseline_source: recorded
    noise_check: false
"""
VERDICTS_PER_RECORD = 2
NUL_ANSWER_RATE = 0.1  # share of claude-opus-4-7 answers that hold U+0000


@dataclass(frozen=True, slots=True)
class PoisonCase:
    name: str
    request_id: str | None  # None when the record has no usable id
    value: bytes
    reason: str | None  # the dead-letter reason, or None when the record must be verdicted
    truncated: bool = False  # the dead letter keeps only the first bytes


def behaviours_file(folder: Path) -> Path:
    """Clean, fast models, except that the candidate claude-opus-4-7 sometimes answers with U+0000."""
    clean: dict[str, Any] = {"latency_ms": 1, "nondeterminism": 0.0, "faults": {}}
    models = {
        BASELINE: clean,
        "claude-sonnet-4-6": clean,
        "claude-opus-4-7": {**clean, "faults": {"nul_char": NUL_ANSWER_RATE}},
    }
    path = folder / "poison-behaviours.yaml"
    path.write_text(json.dumps({"models": models}))
    return path


# Dead letters keep the record's bytes whole (up to the 4 MB dead-letter limit), so the suite can check them.
PRIVACY = "privacy: {dead_letter_payload: full, dead_letter_max_bytes: 16777216}"


def poison_config(folder: Path, base_url: str, extra: str = "") -> Path:
    return write_config(folder, base_url, extra=f"{PRIVACY}\n{extra}", rollouts=ROLLOUTS)


def recorded_response(text: str, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "message", "role": "assistant", "model": BASELINE,
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
        "usage": usage or {"input_tokens": 40, "output_tokens": 12},
    }


def good_envelopes(count: int, seed: int = 5) -> list[dict[str, Any]]:
    """Valid demo traffic, each with a recorded response for the recorded-baseline rollout."""
    envelopes = generate_envelopes(count, seed=seed)
    for envelope in envelopes:
        envelope["request_id"] = f"good-{seed}-{envelope['request_id']}"
        envelope["response"] = recorded_response(f"Recorded answer for {envelope['request_id']}.")
    return envelopes


def _encode(envelope: dict[str, Any]) -> bytes:
    # json.dumps writes U+0000 and lone surrogates as \u escapes, exactly as a JSON producer would.
    return json.dumps(envelope).encode()


def poison_cases(seed: int = 5) -> list[PoisonCase]:
    """Every kind of poison record from the field, one record each, with what must become of it."""
    template = generate_envelopes(1, seed=seed + 1000)[0]
    template["response"] = recorded_response("A recorded answer.")

    def variant(name: str, **changes: Any) -> dict[str, Any]:
        envelope = json.loads(json.dumps(template))
        envelope["request_id"] = f"poison-{seed}-{name}"
        envelope.update(changes)
        return envelope

    cases = [
        # Escaped and verdicted: labels and text describe the request, they do not identify it.
        PoisonCase("nul-route", f"poison-{seed}-nul-route", _encode(variant("nul-route", route="support\x00summary")), None),
        PoisonCase("surrogate-route", f"poison-{seed}-surrogate-route",
                   _encode(variant("surrogate-route", route="route-\ud800")), None),
        PoisonCase("nul-attribute-key", f"poison-{seed}-nul-attribute-key",
                   _encode(variant("nul-attribute-key", attributes={"ten\x00ant": "acme"})), None),
        PoisonCase("nul-attribute-value", f"poison-{seed}-nul-attribute-value",
                   _encode(variant("nul-attribute-value", attributes={"tenant": "ac\x00me"})), None),
        PoisonCase("nul-recorded-text", f"poison-{seed}-nul-recorded-text",
                   _encode(variant("nul-recorded-text", response=recorded_response("recorded\x00answer \ud801"))), None),
        # Refused and dead-lettered with the reason.
        PoisonCase("nul-request-id", None, _encode(variant("x", request_id="req\x00nul")), "invalid_field:request_id"),
        PoisonCase("surrogate-request-id", None, _encode(variant("x", request_id="req\udc00sur")),
                   "invalid_field:request_id"),
        PoisonCase("nan-usage", None, _encode(variant("nan-usage", response=recorded_response(
            "x", {"input_tokens": 3, "output_tokens": float("nan")}))), "invalid_field:response"),
        PoisonCase("infinity-usage", None, _encode(variant("infinity-usage", response=recorded_response(
            "x", {"input_tokens": float("inf"), "output_tokens": 3}))), "invalid_field:response"),
        PoisonCase("year-1", None, _encode(variant("year-1", captured_at="0001-01-01T00:00:00+23:59")),
                   "invalid_field:captured_at"),
        PoisonCase("year-9999", None, _encode(variant("year-9999", captured_at="9999-12-31T23:59:59-23:59")),
                   "invalid_field:captured_at"),
        PoisonCase("long-route", None, _encode(variant("long-route", route="r" * 300)), "invalid_field:route"),
        # 1.5 MB that is not JSON: under the envelope limit, kept whole.
        PoisonCase("invalid-1.5mb", None, b'{"schema": "shadowd.mirror/v1", "pad": "' + b"x" * (1536 * 1024),
                   "invalid_json"),
    ]
    return cases


def too_large_case(seed: int = 5) -> PoisonCase:
    """A 4.5 MB record: over the envelope limit, dead-lettered with its first 4 MB and the truncation flag."""
    envelope = json.loads(json.dumps(generate_envelopes(1, seed=seed + 2000)[0]))
    envelope["request_id"] = f"poison-{seed}-too-large"
    envelope["attributes"] = {"pad": "y" * (4608 * 1024)}
    return PoisonCase("too-large", None, _encode(envelope), "too_large", truncated=True)


def mixed_records(good: int, seed: int = 5, with_too_large: bool = False) -> tuple[list[bytes], list[PoisonCase]]:
    """`good` valid records with every poison case spread among them (seeded order); returns values and cases."""
    cases = poison_cases(seed) + ([too_large_case(seed)] if with_too_large else [])
    values = [_encode(e) for e in good_envelopes(good, seed)]
    rng = random.Random(seed)
    for case in cases:
        values.insert(rng.randrange(len(values) + 1), case.value)
    return values, cases


def expected_reasons(cases: list[PoisonCase]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for case in cases:
        if case.reason is not None:
            counts[case.reason] = counts.get(case.reason, 0) + 1
    return counts


def verdicted_ids(good: int, cases: list[PoisonCase], seed: int = 5) -> set[str]:
    ids = {str(e["request_id"]) for e in good_envelopes(good, seed)}
    return ids | {c.request_id for c in cases if c.reason is None and c.request_id is not None}


def write_jsonl(path: Path, values: list[bytes]) -> Path:
    path.write_bytes(b"".join(value + b"\n" for value in values))
    return path

"""The judge (SPEC §8): the blind grading request, the grade it answers with, and what a grade finds.

Pure: the pipeline's grader (shadowd/judge.py) sends what `grading_request` builds through the same
model client as replays, and turns the answer into a `Grade` with `parse_grade`.
"""
# Over 400 lines: the judge's request, grade parsing and finding (SPEC §8) share the grade's schema and
# wording; kept as one contract.

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from shadowd.core.findings import Code, Finding, Status
from shadowd.core.results import SideResult

# Bump whenever the prompt or the grade rules change: every graded verdict stores it.
JUDGE_VERSION = "2026.11.1"
GRADE_TOOL_NAME = "shadowd_grade"
# Exactly the tool of SPEC §8, so any Messages-API server (a test double too) can answer it.
GRADE_TOOL: dict[str, Any] = {
    "name": GRADE_TOOL_NAME,
    "input_schema": {
        "type": "object",
        "required": ["acceptable", "reason"],
        "properties": {
            "acceptable": {"type": "boolean"},
            "score": {"type": "integer", "minimum": 1, "maximum": 5},
            "reason": {"type": "string"},
        },
    },
}
GRADE_TOOL_CHOICE: dict[str, str] = {"type": "tool", "name": GRADE_TOOL_NAME}
MASKED_MODEL = "[model]"
MAX_SYSTEM_CHARS = 12_000
MAX_CONVERSATION_CHARS = 60_000
MAX_ANSWER_CHARS = 40_000
MAX_REASON_CHARS = 1_000
DEFAULT_MAX_TOKENS = 1024

SYSTEM_PREAMBLE = """\
You grade one answer that an assistant gave in a conversation, against the rubric at the end.

You see a single answer. Other answers to the same conversation are graded separately and you will \
not see them, so do not compare with answers you imagine, and do not guess who or what wrote this \
one: judge only what it says, for the conversation it replies to.

Call the shadowd_grade tool exactly once:
- acceptable: true when the answer meets the rubric well enough to be sent to the user as it is; \
false otherwise.
- score: 1 (useless or harmful) to 5 (fully meets the rubric).
- reason: one or two sentences naming what decided the grade.

Rubric:
"""

GradingStatus = Literal["graded", "failed", "over_budget", "not_sampled", "no_text"]
_SURROGATES = re.compile("[\ud800-\udfff\x00]")


@dataclass(frozen=True, slots=True)
class JudgeSpec:
    """A route's `judge` block: which model grades, by which rubric, on which share of verdicts."""

    model: str
    rubric: str
    sample_rate: float = 1.0
    max_tokens: int = DEFAULT_MAX_TOKENS

    def sampled_in(self, request_id: str) -> bool:
        return grading_sampled(request_id, self.sample_rate)


def grading_sampled(request_id: str, sample_rate: float) -> bool:
    """Deterministic per request and independent of the rollout, so rollouts sharing a baseline
    grade the same requests and share that baseline's grading call; a redelivery gets the same answer."""
    if sample_rate >= 1.0:
        return True
    if sample_rate <= 0.0:
        return False
    digest = hashlib.sha256(b"shadowd.judge\0" + request_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < sample_rate


def gradable(baseline: SideResult | None, candidate: SideResult | None) -> bool:
    """Both answers exist and have text: a tool call alone or a failed call has nothing to grade."""
    return all(side is not None and side.ok and side.text.strip() for side in (baseline, candidate))


# --- the request -----------------------------------------------------------------------------------


def grading_request(
    spec: JudgeSpec, request: dict[str, Any], answer: SideResult, hidden_models: Iterable[str] = ()
) -> dict[str, Any]:
    """The Messages API body that grades `answer` to the production `request`, blind.

    The rubric goes in the system prompt; the production conversation and the answer go in the one
    user message; the only tool is shadowd_grade, forced. No model id appears anywhere: the request's
    `model` is never copied, and each id in `hidden_models` is masked wherever the text mentions it.
    """
    hide = tuple(sorted({m for m in hidden_models if m}, key=len, reverse=True))
    system = _clean(_system_text(request.get("system")), hide)
    conversation = [(role, _clean(text, hide)) for role, text in _turns(request.get("messages"))]
    tools = [_clean(line, hide) for line in _tool_lines(request.get("tools"))]
    answer_text = _clean(_answer_text(answer), hide)
    return {
        "model": spec.model,
        "max_tokens": spec.max_tokens,
        "system": SYSTEM_PREAMBLE + _clean(spec.rubric, hide),
        "tools": [GRADE_TOOL],
        "tool_choice": dict(GRADE_TOOL_CHOICE),
        "messages": [{"role": "user", "content": _user_message(system, conversation, tools, answer_text)}],
    }


def _user_message(system: str, turns: list[tuple[str, str]], tools: list[str], answer: str) -> str:
    everything = [system, answer, *tools, *(text for _, text in turns)]
    conversation_tag = _fence("conversation", everything)
    answer_tag = _fence("answer", everything)
    parts = ["The conversation the answer replies to:", f"<{conversation_tag}>"]
    if system:
        parts.append(f"[system instructions]\n{_head(system, MAX_SYSTEM_CHARS)}")
    if tools:
        parts.append("[tools the assistant could call]\n" + "\n".join(tools))
    parts.append(_tail("\n\n".join(f"[{role}]\n{text}" for role, text in turns), MAX_CONVERSATION_CHARS))
    parts += [
        f"</{conversation_tag}>",
        "",
        "The answer under grading:",
        f"<{answer_tag}>",
        _head(answer, MAX_ANSWER_CHARS),
        f"</{answer_tag}>",
        "",
        f"Grade this answer with the {GRADE_TOOL_NAME} tool.",
    ]
    return "\n".join(parts)


def _fence(name: str, texts: Sequence[str]) -> str:
    """A tag name whose closing tag no text contains: an answer cannot end its own quotation."""
    tag, n = name, 0
    while any(f"</{tag}>" in text or f"<{tag}>" in text for text in texts):
        n += 1
        tag = f"{name}-{n}"
    return tag


def _clean(text: str, hide: Sequence[str]) -> str:
    # Lone surrogates cannot be encoded to UTF-8 and NUL is refused by some servers.
    text = _SURROGATES.sub("\ufffd", text)
    for model in hide:
        text = text.replace(model, MASKED_MODEL)
    return text


def _head(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[… {len(text) - limit} characters omitted …]"


def _tail(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"[… {len(text) - limit} earlier characters omitted …]\n" + text[-limit:]


def _system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n".join(str(b.get("text", "")) for b in system if isinstance(b, dict) and b.get("type") == "text")
    return ""


def _turns(messages: Any) -> list[tuple[str, str]]:
    if not isinstance(messages, list):
        return []
    turns = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        role = role if role in ("user", "assistant") else "user"
        turns.append((str(role), _content_text(message.get("content"))))
    return turns


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "\n".join(part for part in (_block_text(block) for block in content) if part)


def _block_text(block: Any) -> str:
    if not isinstance(block, dict):
        return ""
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind == "tool_use":
        return f"[tool call {block.get('name')}: {_json(block.get('input'))}]"
    if kind == "tool_result":
        inner = block.get("content")
        return f"[tool result: {_content_text(inner) if isinstance(inner, list) else inner or ''}]"
    if kind in ("thinking", "redacted_thinking"):
        return ""  # the production model's private reasoning is not part of what the user saw
    return f"[{kind}]"


def _tool_lines(tools: Any) -> list[str]:
    if not isinstance(tools, list):
        return []
    lines = []
    for tool in tools:
        if isinstance(tool, dict) and isinstance(tool.get("name"), str):
            description = tool.get("description")
            lines.append(f"- {tool['name']}" + (f": {description}" if isinstance(description, str) else ""))
    return lines


def _answer_text(answer: SideResult) -> str:
    return "\n".join(part for part in (_block_text(block) for block in answer.content) if part)


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


# --- the grade ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Grade:
    """One answer's grade. `error` set means no grade: the call failed or its tool input was malformed."""

    model: str
    acceptable: bool | None = None
    score: int | None = None
    reason: str | None = None
    cost_usd: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.acceptable is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "acceptable": self.acceptable,
            "score": self.score,
            "reason": self.reason,
            "judge_model": self.model,
            "cost_usd": self.cost_usd,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Grade:
        acceptable = data.get("acceptable")
        score = data.get("score")
        cost = data.get("cost_usd")
        return cls(
            model=str(data.get("judge_model") or ""),
            acceptable=acceptable if isinstance(acceptable, bool) else None,
            score=score if isinstance(score, int) and not isinstance(score, bool) else None,
            reason=data.get("reason") if isinstance(data.get("reason"), str) else None,
            cost_usd=float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None,
            error=data.get("error") if isinstance(data.get("error"), str) else None,
        )


def parse_grade(response: SideResult, judge_model: str) -> Grade:
    """The grade in a grading call's answer; never raises: anything unusable is a Grade with `error`."""
    cost = response.cost_usd
    if not response.ok:
        return Grade(judge_model, error=_clip(f"grading call failed: {response.error or 'unknown error'}"), cost_usd=cost)
    calls = [b for b in response.content if b.get("type") == "tool_use" and b.get("name") == GRADE_TOOL_NAME]
    if not calls:
        return Grade(judge_model, error=f"the judge answered without calling {GRADE_TOOL_NAME}", cost_usd=cost)
    data = calls[0].get("input")
    if not isinstance(data, dict):
        return Grade(judge_model, error=f"{GRADE_TOOL_NAME} input is not an object", cost_usd=cost)
    acceptable = data.get("acceptable")
    if not isinstance(acceptable, bool):
        return Grade(judge_model, error=f"acceptable is not a boolean: {_clip(repr(acceptable), 80)}", cost_usd=cost)
    reason = data.get("reason")
    if not isinstance(reason, str):
        return Grade(judge_model, error=f"reason is not a string: {_clip(repr(reason), 80)}", cost_usd=cost)
    score = data.get("score")
    if score is not None:
        integral = isinstance(score, int | float) and not isinstance(score, bool) and float(score).is_integer()
        if not integral or not 1 <= score <= 5:
            return Grade(judge_model, error=f"score is not an integer in 1..5: {_clip(repr(score), 80)}", cost_usd=cost)
        score = int(score)
    return Grade(
        judge_model, acceptable=acceptable, score=score,
        reason=_clip(_SURROGATES.sub("\ufffd", reason), MAX_REASON_CHARS), cost_usd=cost,
    )


def _clip(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class Grading:
    """What the judge did for one verdict: `graded` only when both answers got a usable grade."""

    status: GradingStatus
    judge_model: str
    baseline: Grade | None = None
    candidate: Grade | None = None
    version: str = JUDGE_VERSION

    @property
    def cost_usd(self) -> float:
        return sum(g.cost_usd or 0.0 for g in (self.baseline, self.candidate) if g is not None)

    @property
    def graded(self) -> bool:
        return self.status == "graded"

    @property
    def baseline_acceptable(self) -> bool | None:
        return self.baseline.acceptable if self.graded and self.baseline else None

    @property
    def candidate_acceptable(self) -> bool | None:
        return self.candidate.acceptable if self.graded and self.candidate else None

    @property
    def error(self) -> str | None:
        errors = [f"{side}: {g.error}" for side, g in (("baseline", self.baseline), ("candidate", self.candidate))
                  if g is not None and g.error]
        return "; ".join(errors) or None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "judge_model": self.judge_model,
            "judge_version": self.version,
            "baseline": self.baseline.to_dict() if self.baseline else None,
            "candidate": self.candidate.to_dict() if self.candidate else None,
            "cost_usd": self.cost_usd,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Grading:
        def grade(value: Any) -> Grade | None:
            return Grade.from_dict(value) if isinstance(value, dict) else None

        status = data.get("status")
        return cls(
            status=status if status in ("graded", "failed", "over_budget", "not_sampled", "no_text") else "failed",
            judge_model=str(data.get("judge_model") or ""),
            baseline=grade(data.get("baseline")),
            candidate=grade(data.get("candidate")),
            version=str(data.get("judge_version") or JUDGE_VERSION),
        )


def combine(judge_model: str, baseline: Grade, candidate: Grade) -> Grading:
    """Both grades of one verdict: graded only when both are usable, else failed (the pair is unusable)."""
    status: GradingStatus = "graded" if baseline.ok and candidate.ok else "failed"
    return Grading(status, judge_model, baseline, candidate)


def quality_finding(grading: Grading | None) -> Finding | None:
    """`quality.unacceptable` when the candidate's answer is unacceptable and the baseline's acceptable."""
    if grading is None or not grading.graded or grading.baseline is None or grading.candidate is None:
        return None
    if not (grading.candidate.acceptable is False and grading.baseline.acceptable is True):
        return None
    return Finding.of(
        Code.QUALITY_UNACCEPTABLE,
        _clip(
            f"the judge graded the candidate's answer unacceptable ({_score(grading.candidate)}) and the "
            f"baseline's acceptable ({_score(grading.baseline)}): {grading.candidate.reason or 'no reason given'}",
            600,
        ),
    )


def _score(grade: Grade) -> str:
    return "no score" if grade.score is None else f"score {grade.score}/5"


def apply_grading(
    status: Status, findings: tuple[Finding, ...], grading: Grading | None
) -> tuple[Status, tuple[Finding, ...]]:
    """The verdict's status and findings with the judge's finding added: a blocking finding, so a
    pass or a noise verdict becomes a regression; error and skipped verdicts are never graded."""
    finding = quality_finding(grading)
    if finding is None or status in (Status.ERROR, Status.SKIPPED):
        return status, findings
    return Status.REGRESSION, (*findings, finding)


def candidate_better(grading: Grading | None) -> bool:
    """The mirror image of `quality.unacceptable`: the discordant pair that counts for the candidate."""
    return (
        grading is not None
        and grading.graded
        and grading.baseline_acceptable is False
        and grading.candidate_acceptable is True
    )


def failed(judge_model: str, reason: str) -> Grading:
    """A grading that never produced a usable answer (an unexpected fault in the grader itself)."""
    return Grading("failed", judge_model, Grade(judge_model, error=_clip(reason)), None)


def skipped(judge_model: str, status: GradingStatus) -> Grading:
    return Grading(status, judge_model)


__all__ = [
    "GRADE_TOOL",
    "GRADE_TOOL_NAME",
    "JUDGE_VERSION",
    "Grade",
    "Grading",
    "JudgeSpec",
    "apply_grading",
    "candidate_better",
    "combine",
    "gradable",
    "grading_request",
    "grading_sampled",
    "parse_grade",
    "quality_finding",
]

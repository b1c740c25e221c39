"""What the fake model answers to one request, shared by the live endpoint and the batches endpoint."""

from __future__ import annotations

import random

from shadowd.fakemodel.behaviours import Behaviours
from shadowd.fakemodel.generate import (
    WRONG_ANSWER_MARKER,
    Reply,
    answer_under_grading,
    generate_reply,
    grade_reply,
    is_grading_request,
)
from shadowd.fakemodel.request_view import RequestView


def reply_for(behaviours: Behaviours, model: str, view: RequestView, content_fault: str | None) -> Reply:
    """The answer `model` gives to `view` under the behaviours (live calls and batch requests alike)."""
    if is_grading_request(view):
        # The judge sees only the prompt: whether the answer is wrong comes from its own text.
        wrong = WRONG_ANSWER_MARKER in answer_under_grading(view)
        return grade_reply(view, *behaviours.grade_plan(model, view, wrong))
    salt = random.getrandbits(62) | 1 if behaviours.is_nondeterministic(model, view) else 0
    noisy = behaviours.behaviour_for(model).noisy_fields
    return generate_reply(view, content_fault, salt, noisy, random.getrandbits(62) | 1 if noisy else 0)

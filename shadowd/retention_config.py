"""The `retention:` config section: how long verdicts, their stored outputs and dead letters are kept."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

# A hundred years: anything longer is "forever" and better written as null.
MAX_DAYS = 36_500.0


class RetentionConfig(BaseModel):
    """Each *_days is a positive number of days (fractions allowed) or null to keep forever (the default).

    `verdicts_days` deletes verdict rows and their findings, `outputs_days` keeps the verdict row and its
    findings but drops the stored answers, request summary and judge reasons sooner, `dead_letters_days`
    deletes dead letters. `batch_rows` bounds the rows one purge statement touches.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    verdicts_days: float | None = Field(default=None, gt=0, le=MAX_DAYS, allow_inf_nan=False)
    outputs_days: float | None = Field(default=None, gt=0, le=MAX_DAYS, allow_inf_nan=False)
    dead_letters_days: float | None = Field(default=None, gt=0, le=MAX_DAYS, allow_inf_nan=False)
    batch_rows: int = Field(default=5000, ge=100, le=50_000)

    @field_validator("verdicts_days", "outputs_days", "dead_letters_days", "batch_rows", mode="before")
    @classmethod
    def _not_boolean(cls, value: Any) -> Any:
        # YAML `yes` / `true` would otherwise pass as 1.
        if isinstance(value, bool):
            raise ValueError(f"must be a number, not {str(value).lower()}")
        return value

    @field_validator("outputs_days")
    @classmethod
    def _outputs_not_after_verdicts(cls, value: float | None, info: ValidationInfo) -> float | None:
        verdicts_days = info.data.get("verdicts_days")
        if value is not None and verdicts_days is not None and value > verdicts_days:
            raise ValueError(
                f"{value:g} exceeds verdicts_days ({verdicts_days:g}): outputs go with their verdict, "
                "so they cannot be kept longer than it"
            )
        return value

    @property
    def enabled(self) -> bool:
        return any(d is not None for d in (self.verdicts_days, self.outputs_days, self.dead_letters_days))

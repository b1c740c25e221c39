"""Config loading: defaults, resolution of schemas and profiles, and errors that name key and file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shadowd.config import ConfigError, Settings, load_config

GOOD = """
kafka:
  topic: llm.mirror
models:
  base_url: http://127.0.0.1:9999
routes:
  support-summary:
    output_schema: schemas/summary.json
    ignore_paths: ["$.generated_at"]
rollouts:
  - name: opus-4-7
    baseline: claude-opus-4-6
    candidate: claude-opus-4-7
    gate:
      min_samples: 50
"""


def write(tmp_path: Path, text: str, schema: object = None) -> Path:
    (tmp_path / "schemas").mkdir(exist_ok=True)
    (tmp_path / "schemas" / "summary.json").write_text(json.dumps(schema or {"type": "object"}))
    path = tmp_path / "shadowd.yaml"
    path.write_text(text)
    return path


def test_good_config_resolves_everything(tmp_path: Path) -> None:
    """A valid file yields rollouts, route rules with loaded schemas (relative to the file), and defaults."""
    config = load_config(write(tmp_path, GOOD), Settings())
    assert config.kafka.dead_letter_topic == "llm.mirror.dlq"
    assert config.kafka.decisions_topic == "shadowd.decisions"
    assert config.rules_for("support-summary").output_schema == {"type": "object"}
    assert config.rules_for("support-summary").ignore_paths == ("$.generated_at",)
    assert config.rules_for("other").output_schema is None
    spec = config.rollout("opus-4-7")
    assert spec is not None and spec.gate.min_samples == 50 and spec.stages == (1, 5, 25, 50, 100)
    assert config.models.max_concurrency == 256


def test_environment_overrides_bootstrap_servers(tmp_path: Path) -> None:
    """SHADOWD_KAFKA_BOOTSTRAP_SERVERS wins over the file."""
    config = load_config(write(tmp_path, GOOD), Settings(kafka_bootstrap_servers="10.0.0.1:9092"))
    assert config.kafka.bootstrap_servers == "10.0.0.1:9092"


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        (GOOD.replace("topic: llm.mirror", "topik: llm.mirror"), "kafka.topik", "unknown key"),
        (GOOD.replace("min_samples: 50", "min_samples: many"), "rollouts[0](opus-4-7).gate.min_samples", "integer"),
        (GOOD.replace("candidate: claude-opus-4-7", "candidate: gpt-9"), "rollouts[0].candidate", "profile"),
        (GOOD.replace("schemas/summary.json", "schemas/missing.json"), "routes.support-summary.output_schema",
         "cannot read"),
        (GOOD + "    stages: [5, 1]\n", "rollouts[0](opus-4-7).stages", "increase"),
        (GOOD + "    sample_rate: 2\n", "rollouts[0](opus-4-7).sample_rate", "less than or equal"),
        (GOOD + "models2: {}\n", "models2", "unknown key"),
        ("- just\n- a list\n", "(top level)", "mapping"),
        ("kafka: [unclosed\n", "(file)", "YAML"),
        (GOOD.replace('["$.generated_at"]', '["$.a[?(@.x)]"]'), "routes.support-summary.ignore_paths",
         "not a json path"),
    ],
)
def test_errors_name_the_key_and_the_file(tmp_path: Path, text: str, key: str, words: str) -> None:
    """Each config mistake stops loading with the offending key, the file path and a reason."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, Settings())
    assert caught.value.key == key
    assert str(path) in str(caught.value)
    assert words.lower() in str(caught.value).lower()


def test_invalid_json_schema_is_rejected(tmp_path: Path) -> None:
    """An output_schema file that is not a valid JSON Schema is a config error, not a runtime surprise."""
    path = write(tmp_path, GOOD, schema={"type": "no-such-type"})
    with pytest.raises(ConfigError) as caught:
        load_config(path, Settings())
    assert caught.value.key == "routes.support-summary.output_schema"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A config path that does not exist is reported with the path."""
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml", Settings())
    assert "nope.yaml" in str(caught.value)


def test_duplicate_rollout_names_are_rejected(tmp_path: Path) -> None:
    """Two rollouts with one name would share verdicts: refused."""
    text = GOOD + "  - name: opus-4-7\n    baseline: claude-opus-4-6\n    candidate: claude-sonnet-4-6\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), Settings())
    assert "used twice" in str(caught.value)

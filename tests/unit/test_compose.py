"""deploy/compose.yaml: valid against the Compose schema, and running the commands the integration tests run."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest

from shadowd.cli import main
from tests.compose import COMPOSE_CONFIG_DIR, load_compose, service_argv
from tests.helpers import ROOT

SCHEMA = json.loads((ROOT / "tests" / "data" / "compose-spec.schema.json").read_text())
SHADOWD_SERVICES = ("db-upgrade", "fake-model", "shadowd", "traffic")


def _errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(document)]


def test_the_compose_file_is_valid_against_the_compose_schema() -> None:
    """Every key of deploy/compose.yaml is one the Compose specification defines."""
    assert _errors(load_compose()) == []


def test_the_schema_check_rejects_a_misspelt_key() -> None:
    """The validation can fail: a service key the specification does not know is reported."""
    document = load_compose()
    document["services"]["kafka"]["imagee"] = document["services"]["kafka"].pop("image")
    assert any("imagee" in error for error in _errors(document))


def test_the_stack_is_kraft_kafka_pinned_postgres_and_the_shadowd_services_in_order() -> None:
    """One KRaft Kafka node from the official image at a fixed version; db upgrade runs once before shadowd."""
    services = load_compose()["services"]
    assert set(services) == {"kafka", "postgres", *SHADOWD_SERVICES}
    assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", services["kafka"]["image"])
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert re.fullmatch(r"postgres:\d+(\.\d+)?", services["postgres"]["image"])
    assert services["shadowd"]["depends_on"]["db-upgrade"]["condition"] == "service_completed_successfully"
    assert services["db-upgrade"]["restart"] == "no"
    for name in SHADOWD_SERVICES:
        environment = services[name]["environment"]
        assert environment["ANTHROPIC_BASE_URL"] == "http://fake-model:8787"
        assert environment["SHADOWD_DATABASE_URL"].startswith("postgresql+asyncpg://")


@pytest.mark.parametrize("service", ["db-upgrade", "fake-model", "shadowd"])
def test_each_shadowd_command_is_one_the_cli_accepts(service: str) -> None:
    """The compose commands parse as `shadowd` subcommands with known options (no typo survives to `up`)."""
    argv = service_argv(service, {})[3:]
    command = main.make_context("shadowd", list(argv), resilient_parsing=False)
    sub = main.get_command(command, argv[0])
    assert sub is not None
    if hasattr(sub, "commands"):  # `db upgrade`
        sub = sub.get_command(command, argv[1])  # type: ignore[union-attr]
        assert sub is not None
        sub.make_context(argv[1], list(argv[2:]))
    else:
        sub.make_context(argv[0], list(argv[1:]))


def test_the_traffic_command_is_the_mirror_demo_app_with_flags_it_accepts() -> None:
    """The traffic service runs `python -m shadowd.mirror.demo_traffic` with flags its parser knows."""
    from shadowd.mirror import demo_traffic

    argv = service_argv("traffic", {})
    assert argv[1:3] == ["-m", "shadowd.mirror.demo_traffic"]
    parsed = demo_traffic.build_parser().parse_args(argv[3:])
    assert parsed.count == 500 and parsed.bootstrap == "kafka:9092"


def test_the_mounted_config_loads() -> None:
    """deploy/compose/shadowd.yaml is a valid config with the recorded-baseline rollout."""
    from shadowd.config import load_config

    config = load_config(COMPOSE_CONFIG_DIR / "shadowd.yaml")
    assert [r.baseline_source for r in config.rollouts] == ["recorded"]

"""The one place that builds adapters from config and connects them to the pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from shadowd.adapters.anthropic_client import AnthropicModelClient, RetryPolicy
from shadowd.adapters.sql_store import SqlVerdictStore, open_store
from shadowd.batch import attach_batches
from shadowd.config import Config
from shadowd.metrics import Metrics
from shadowd.pipeline import ShadowPipeline
from shadowd.writer import BatchWriter


def model_client(
    config: Config, base_url: str | None = None, metrics: Metrics | None = None
) -> AnthropicModelClient:
    return AnthropicModelClient(
        base_url=base_url or config.models.base_url,
        api_key=config.api_key(),
        timeout_s=config.models.timeout_s,
        max_concurrency=config.models.max_concurrency,
        profiles=config.profiles,
        retry=RetryPolicy(max_attempts=config.models.max_attempts, deadline_s=config.models.retry_deadline_s),
        metrics=metrics,
    )


@asynccontextmanager
async def open_pipeline(
    config: Config, db_url: str, *, base_url: str | None = None, metrics: Metrics | None = None
) -> AsyncIterator[tuple[ShadowPipeline, BatchWriter, SqlVerdictStore, AnthropicModelClient]]:
    """Store (migrated to head), model client, pipeline and writer; all closed on exit."""
    metrics = metrics or Metrics()
    store = await open_store(db_url, upgrade=True)
    models = model_client(config, base_url, metrics)
    pipeline = ShadowPipeline(config, models, store, metrics)
    batches = attach_batches(pipeline, config, store, base_url)
    writer = BatchWriter(store, metrics, dead_letter=pipeline.dead_letter)
    try:
        await writer.start()
        yield pipeline, writer, store, models
    finally:
        await writer.close()
        if batches is not None:
            await batches.close()
        await models.close()
        await store.close()

"""Factory fixtures for end-to-end tests on the session's real broker."""

from __future__ import annotations

import pytest

from tests.integration.harness import PipelineUnderTest


@pytest.fixture
def pipeline_factory(kafka_bootstrap, topic_prefix, tmp_path):
    """Make pipelines (own namespace, topics, store); every process is stopped afterwards."""
    made: list[PipelineUnderTest] = []

    def make(name: str = "p", **options) -> PipelineUnderTest:
        workdir = tmp_path / name
        workdir.mkdir()
        prefix = topic_prefix() if callable(topic_prefix) else topic_prefix
        pipeline = PipelineUnderTest(kafka_bootstrap, f"{prefix}{name}.", workdir, **options)
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        pipeline.stop()

"""The whole pipeline over SASL_SSL (SCRAM-SHA-512, a test CA) on a broker that has no
other client listener: any Kafka client of the project that did not get the security
settings could not connect, so the results arriving prove every one did.

Each process logs in as its own user (worker, sink, archive; the harness and the CLI as
an operator), as a deployment gives each its own credentials.
"""

from __future__ import annotations

import pytest

from tests.conftest import SASL_USERS
from tests.integration.harness import PipelineUnderTest
from tests.integration.test_pipeline import EXPECTED_HOURLY, _as_expected, known_readings

pytestmark = pytest.mark.integration

WORKER, SINK, ARCHIVE, OPS = SASL_USERS


@pytest.fixture
def secure_pipeline(sasl_kafka, topic_prefix, tmp_path):
    pipeline = PipelineUnderTest(
        sasl_kafka.bootstrap,
        topic_prefix(),
        tmp_path,
        partitions=2,
        kafka_env=sasl_kafka.client_env(OPS),
        process_kafka_env={
            "worker": sasl_kafka.client_env(WORKER),
            "sink": sasl_kafka.client_env(SINK),
            "archive": sasl_kafka.client_env(ARCHIVE),
        },
    )
    try:
        yield pipeline
    finally:
        pipeline.stop()


def test_the_pipeline_runs_end_to_end_over_sasl_ssl_with_a_user_per_process(secure_pipeline):
    pipeline = secure_pipeline
    assert pipeline.security.describe().startswith("SASL_SSL, SCRAM-SHA-512 as user")
    pipeline.start_all()
    pipeline.start("archive", "--flush-seconds", "0")
    bad = (b"s1", b"{this is not json")
    sent = pipeline.send([*known_readings(), bad])
    pipeline.wait_until_caught_up(sent)
    pipeline.wait_until_archived()

    hourly = [_as_expected(v) for _, v, *_ in pipeline.read_topic(pipeline.topics.aqi_hourly)]
    assert hourly == EXPECTED_HOURLY  # worker (Faust) in and out
    assert [r["aqi"] for r in pipeline.rows("aqi_hourly")] == [None, 102, 102]  # the sink
    letters = pipeline.read_topic(pipeline.topics.deadletter)
    assert [(v["reason"], v["value"]) for _, v, *_ in letters] == [("invalid_json", bad[1])]
    assert list(pipeline.archive_dir.glob("topic=*/date=*/hour=*/*.avro"))  # the archive
    tail = pipeline.civicstream("tail", "deadletter", "-n", "1")  # a CLI consumer
    assert tail.returncode == 0, tail.stderr
    assert '"reason": "invalid_json"' in tail.stdout
    for name in ("worker", "sink", "archive"):
        log = pipeline.log(name)
        assert "SASL_SSL, SCRAM-SHA-512 as user" in log  # what it logs of its settings
        password_file = pipeline.process_kafka_env[name]["CIVIC_KAFKA_SASL_PASSWORD_FILE"]
        with open(password_file, encoding="utf-8") as handle:
            assert handle.read().strip() not in log


def test_a_wrong_password_or_an_untrusted_broker_is_refused_with_a_clear_error(
    secure_pipeline,
):
    pipeline = secure_pipeline
    wrong = {
        "CIVIC_KAFKA_SASL_PASSWORD_FILE": "",
        "CIVIC_KAFKA_SASL_PASSWORD": "not-the-password",
    }
    pipeline.kafka_env.update(wrong)
    topics = pipeline.civicstream("topics")
    assert topics.returncode == 3
    assert "refused the login" in topics.stderr
    assert f"as user '{OPS}'" in topics.stderr
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in topics.stderr
    assert "CIVIC_KAFKA_SASL_PASSWORD" in topics.stderr
    assert "not-the-password" not in topics.stderr

    pipeline.process_kafka_env["sink"].update(wrong)
    pipeline.start("sink")
    assert pipeline.processes["sink"].wait(timeout=60) == 2
    assert "refused the login" in pipeline.log("sink")
    assert "not-the-password" not in pipeline.log("sink")

    right = dict(pipeline.process_kafka_env["worker"])
    del right["CIVIC_KAFKA_SSL_CAFILE"]  # trust only the system's CAs, not the test CA
    pipeline.kafka_env.clear()
    pipeline.kafka_env.update(right)
    untrusted = pipeline.civicstream("topics")
    assert untrusted.returncode == 3
    assert "TLS handshake" in untrusted.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
    assert "CIVIC_KAFKA_SSL_CAFILE" in untrusted.stderr

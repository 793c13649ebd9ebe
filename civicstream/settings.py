"""Configuration: environment variables over the city configuration file over defaults.

Every component reads its settings here, once, at start-up. The names are a contract
(see the README's configuration table).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from civicstream.city import (
    SENSOR_TYPES,
    City,
    ConfigError,
    Station,
    load_city,
    parse_duration_ms,
)
from kafkaconf import KafkaSecurity, KafkaSecurityError
from schemas.topics import Topics, partitions_for

if TYPE_CHECKING:
    from streams.incident_state import IncidentSource

__all__ = [
    "BUNDLED_CITIES",
    "SENSOR_TYPES",
    "City",
    "ConfigError",
    "Settings",
    "Station",
    "bundled_city_file",
    "bundled_incident_source",
    "load_city",
    "parse_duration_ms",
]

BUNDLED_CITIES = Path(__file__).resolve().parent / "cities"
BUNDLED_CITY = BUNDLED_CITIES / "beijing.toml"


def bundled_city_file(source: str) -> Path | None:
    """The bundled city file (civicstream/cities) that declares incident source `source`."""
    for path in sorted(BUNDLED_CITIES.glob("*.toml")):
        if source in load_city(path).incident_sources:
            return path
    return None


def bundled_incident_source(name: str) -> IncidentSource | None:
    """The source called `name` in one of the bundled city files."""
    path = bundled_city_file(name)
    return load_city(path).incident_sources[name] if path is not None else None


@dataclass(frozen=True)
class Settings:
    """Everything a civicstream process needs to know, resolved once."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    """TLS and SASL for every Kafka client of this process (CIVIC_KAFKA_SECURITY_PROTOCOL,
    CIVIC_KAFKA_SASL_*, CIVIC_KAFKA_SSL_*: see the kafkaconf package)."""
    store_url: str = "sqlite:///data/civicstream.db"
    config_path: Path = BUNDLED_CITY
    more_configs: tuple[Path, ...] = ()
    allowed_lateness_ms: int = 10 * 60_000
    topic_prefix: str = ""
    partitions: int = 4
    metrics_port: int = 0
    batch_max: int = 2000
    stale_after_ms: int = 2 * 3_600_000
    spike_wait_ms: int = 3_600_000
    """How long (stream time, after the allowed lateness) a final hour waits for the next
    reading of a series whose last reading in it may be a spike (CIVIC_SPIKE_WAIT)."""
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    public_url: str | None = None
    partitions_from_env: bool = False
    """CIVIC_PARTITIONS was set: it beats the city file's ``[topics] partitions`` default."""
    state_store: str = "memory"
    """Where the worker keeps its tables: ``memory`` (rebuilt from the changelog at every
    start) or ``rocksdb`` (on disk in `state_dir`; a restart reads only the changelog tail)."""
    state_dir: Path = Path("data/state")
    standby_replicas: int = 1
    """Faust's table_standby_replicas: other workers that keep a warm copy of each table
    partition (its changelog read continuously), so a takeover needs no long recovery."""
    api_rate_limit: str = "20/s burst 40"
    """Requests per client address `civicstream serve` answers (sinks.api.RateLimit)."""
    api_trusted_proxies: tuple[str, ...] = ()
    """Reverse proxies (addresses or networks) whose X-Forwarded-For names the client."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from CIVIC_* environment variables, defaults for the rest."""
        env = os.environ if environ is None else environ
        defaults = cls()
        lateness = env.get("CIVIC_ALLOWED_LATENESS")
        stale_after = env.get("CIVIC_STALE_AFTER")
        spike_wait = env.get("CIVIC_SPIKE_WAIT")
        # CIVIC_CONFIG may list several city files (separated like PATH): the first is the
        # city of the air-quality stations; incident sources come from all of them.
        configs = [Path(p.strip()) for p in env.get("CIVIC_CONFIG", "").split(os.pathsep)]
        configs = [p for p in configs if str(p) not in ("", ".")] or [defaults.config_path]
        try:
            kafka_security = KafkaSecurity.from_env(env)
        except KafkaSecurityError as error:
            raise ConfigError(str(error)) from None
        return cls(
            kafka_bootstrap=env.get("CIVIC_KAFKA_BOOTSTRAP") or defaults.kafka_bootstrap,
            kafka_security=kafka_security,
            store_url=env.get("CIVIC_STORE_URL") or defaults.store_url,
            config_path=configs[0],
            more_configs=tuple(configs[1:]),
            allowed_lateness_ms=(
                parse_duration_ms(lateness, name="CIVIC_ALLOWED_LATENESS")
                if lateness
                else defaults.allowed_lateness_ms
            ),
            topic_prefix=env.get("CIVIC_TOPIC_PREFIX", defaults.topic_prefix),
            partitions=_positive_int(env, "CIVIC_PARTITIONS", defaults.partitions),
            metrics_port=_positive_int(env, "CIVIC_METRICS_PORT", defaults.metrics_port, zero=True),
            batch_max=_positive_int(env, "CIVIC_BATCH_MAX", defaults.batch_max),
            stale_after_ms=(
                parse_duration_ms(stale_after, name="CIVIC_STALE_AFTER")
                if stale_after
                else defaults.stale_after_ms
            ),
            spike_wait_ms=(
                parse_duration_ms(spike_wait, name="CIVIC_SPIKE_WAIT")
                if spike_wait
                else defaults.spike_wait_ms
            ),
            api_host=env.get("CIVIC_API_HOST") or defaults.api_host,
            api_port=_positive_int(env, "CIVIC_API_PORT", defaults.api_port),
            public_url=env.get("CIVIC_PUBLIC_URL") or None,
            api_rate_limit=env.get("CIVIC_API_RATE_LIMIT") or defaults.api_rate_limit,
            api_trusted_proxies=tuple(
                item.strip()
                for item in env.get("CIVIC_API_TRUSTED_PROXIES", "").split(",")
                if item.strip()
            ),
            partitions_from_env=bool(env.get("CIVIC_PARTITIONS")),
            state_store=_choice(env, "CIVIC_STATE_STORE", STATE_STORES, defaults.state_store),
            state_dir=Path(env.get("CIVIC_STATE_DIR") or defaults.state_dir),
            standby_replicas=_positive_int(
                env, "CIVIC_STANDBY_REPLICAS", defaults.standby_replicas, zero=True
            ),
        )

    def state_path(self, topics: Topics) -> Path:
        """The worker's local table directory for the namespace of `topics` (RocksDB)."""
        return self.state_dir / topics.worker_group

    def topic_partitions(self, topics: Topics, partitions: int | None = None) -> dict[str, int]:
        """The partitions each topic of `topics` is created with.

        `partitions` (a --partitions option) sets every topic; else the city file's
        ``[topics] partitions`` count for a topic it names, else CIVIC_PARTITIONS, else the
        file's default count, else 4. The contract's single-partition topics always get one.
        """
        city = self.city()
        named = {} if partitions is not None else city.topic_partitions
        default = partitions
        if default is None:
            if self.partitions_from_env or city.default_partitions is None:
                default = self.partitions
            else:
                default = city.default_partitions
        counts = {}
        for name, plain in zip(topics.all(), Topics().all(), strict=True):
            counts[name] = partitions_for(plain, named.get(plain, default))
        # The neighbour check's area topic is keyed like the raw topic it follows.
        counts[topics.hourly_by_area] = counts[topics.raw_air_quality]
        return counts

    def city(self) -> City:
        """The city configuration this process runs for (the first CIVIC_CONFIG file)."""
        return load_city(self.config_path)

    @property
    def config_paths(self) -> tuple[Path, ...]:
        """Every city file of CIVIC_CONFIG, the first one first."""
        return (self.config_path, *self.more_configs)

    def cities(self) -> list[City]:
        """Every city file of CIVIC_CONFIG, the first one first."""
        return [load_city(path) for path in (self.config_path, *self.more_configs)]

    def incident_sources(self) -> dict[str, IncidentSource]:
        """The incident sources of every configured city; a name may be declared once."""
        sources: dict[str, IncidentSource] = {}
        for path in (self.config_path, *self.more_configs):
            for name, source in load_city(path).incident_sources.items():
                if name in sources:
                    msg = f"CIVIC_CONFIG: incident source {name!r} is declared twice ({path})"
                    raise ConfigError(msg)
                sources[name] = source
        return sources


STATE_STORES = ("memory", "rocksdb")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = (env.get(name) or default).strip().lower()
    if value not in choices:
        msg = f"{name}={env.get(name)!r} must be one of {', '.join(choices)}"
        raise ConfigError(msg)
    return value


def _positive_int(env: Mapping[str, str], name: str, default: int, *, zero: bool = False) -> int:
    text = env.get(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0 or (value == 0 and not zero):
        msg = f"{name}={text!r} must be a {'non-negative' if zero else 'positive'} integer"
        raise ConfigError(msg)
    return value

"""How every Kafka client of the project connects: TLS and SASL settings from the environment.

One place reads them (`KafkaSecurity.from_env`) and renders them for each client library
the project uses: `kafka_python()` (KafkaConsumer, KafkaProducer, KafkaAdminClient),
`aiokafka()` (AIOKafkaConsumer, AIOKafkaProducer) and the pieces Faust's
``broker_credentials`` is built from (`streams/app.py`). Both libraries get the same
`ssl.SSLContext` (`ssl_context()`), so TLS is configured one way only.

Variables (each process reads its own, so the worker, the sinks and the archive can run
as different Kafka users):

- ``CIVIC_KAFKA_SECURITY_PROTOCOL``: ``PLAINTEXT`` (default), ``SSL``, ``SASL_PLAINTEXT``
  or ``SASL_SSL``;
- ``CIVIC_KAFKA_SASL_MECHANISM``: ``SCRAM-SHA-512`` (default), ``SCRAM-SHA-256``, ``PLAIN``;
- ``CIVIC_KAFKA_SASL_USERNAME``, and ``CIVIC_KAFKA_SASL_PASSWORD`` or
  ``CIVIC_KAFKA_SASL_PASSWORD_FILE`` (one of the two; a file keeps the password out of the
  process environment, e.g. a mounted Kubernetes Secret);
- ``CIVIC_KAFKA_SSL_CAFILE``: PEM file of the CA(s) that signed the brokers' certificates
  (default: the system's trust store);
- ``CIVIC_KAFKA_SSL_CERTFILE`` and ``CIVIC_KAFKA_SSL_KEYFILE``: a client certificate and
  its key (PEM) for brokers that require TLS client authentication, and
  ``CIVIC_KAFKA_SSL_KEY_PASSWORD`` or ``CIVIC_KAFKA_SSL_KEY_PASSWORD_FILE`` when the key is
  encrypted.

`check_login(bootstrap, security)` makes one connection the way the clients will and
raises `KafkaLoginError` with the reason when the broker refuses the TLS or SASL settings
(kafka-python would only time out); every command runs it before starting its clients.

Secrets are `Secret` objects: their ``repr`` and ``str`` are ``'***'``, so printing or
logging the settings (or an exception that carries them) never shows a password. Broker
hostnames are always verified against their certificates.

Why a package of its own: every layer opens Kafka connections (streams, sinks, the CLI,
the benchmarks), and the layering rules (tests/unit/test_layering.py) let sinks depend
only on schemas and telemetry, and keep Kafka out of schemas and telemetry. A leaf
package with no project imports and no framework imports (standard library only) may be
imported by all of them without bending those rules.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafkaconf._login import KafkaLoginError, check_login

__all__ = [
    "MECHANISMS",
    "PROTOCOLS",
    "KafkaLoginError",
    "KafkaSecurity",
    "KafkaSecurityError",
    "Secret",
    "check_login",
    "resolve",
]

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
DEFAULT_MECHANISM = "SCRAM-SHA-512"

ENV_PROTOCOL = "CIVIC_KAFKA_SECURITY_PROTOCOL"
ENV_MECHANISM = "CIVIC_KAFKA_SASL_MECHANISM"
ENV_USERNAME = "CIVIC_KAFKA_SASL_USERNAME"
ENV_PASSWORD = "CIVIC_KAFKA_SASL_PASSWORD"
ENV_CAFILE = "CIVIC_KAFKA_SSL_CAFILE"
ENV_CERTFILE = "CIVIC_KAFKA_SSL_CERTFILE"
ENV_KEYFILE = "CIVIC_KAFKA_SSL_KEYFILE"
ENV_KEY_PASSWORD = "CIVIC_KAFKA_SSL_KEY_PASSWORD"

VARIABLES = (
    ENV_PROTOCOL,
    ENV_MECHANISM,
    ENV_USERNAME,
    ENV_PASSWORD,
    f"{ENV_PASSWORD}_FILE",
    ENV_CAFILE,
    ENV_CERTFILE,
    ENV_KEYFILE,
    ENV_KEY_PASSWORD,
    f"{ENV_KEY_PASSWORD}_FILE",
)
"""Every variable `KafkaSecurity.from_env` reads."""


class KafkaSecurityError(ValueError):
    """The Kafka security settings cannot be used; the message names the variable."""


class Secret:
    """A password that never shows itself: ``repr``/``str``/f-strings give ``'***'``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value itself, for the one place that hands it to a client library."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        msg = "a Secret is not pickled (it would carry the password in clear)"
        raise TypeError(msg)


def _secret(env: Mapping[str, str], name: str) -> Secret | None:
    """``NAME`` or the file named by ``NAME_FILE`` (its content without the final newline)."""
    value = env.get(name) or None
    path = env.get(f"{name}_FILE") or None
    if value is not None and path is not None:
        msg = f"set {name} or {name}_FILE, not both"
        raise KafkaSecurityError(msg)
    if path is None:
        return Secret(value) if value is not None else None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        msg = f"{name}_FILE={path!r} cannot be read: {error.strerror or error}"
        raise KafkaSecurityError(msg) from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        msg = f"{name}_FILE={path!r} is empty"
        raise KafkaSecurityError(msg)
    return Secret(text)


def _file(env: Mapping[str, str], name: str) -> str | None:
    path = env.get(name) or None
    if path is not None and not Path(path).is_file():
        msg = f"{name}={path!r} is not a readable file"
        raise KafkaSecurityError(msg)
    return path


@dataclass(frozen=True)
class KafkaSecurity:
    """How to reach the brokers: protocol, SASL login, TLS trust and client certificate.

    The default is PLAINTEXT with no login (a local development broker).
    """

    protocol: str = "PLAINTEXT"
    mechanism: str = DEFAULT_MECHANISM
    username: str | None = None
    password: Secret | None = None
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    key_password: Secret | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            msg = f"{ENV_PROTOCOL}={self.protocol!r} is not one of {', '.join(PROTOCOLS)}"
            raise KafkaSecurityError(msg)
        if self.mechanism not in MECHANISMS:
            msg = f"{ENV_MECHANISM}={self.mechanism!r} is not one of {', '.join(MECHANISMS)}"
            raise KafkaSecurityError(msg)
        if self.sasl:
            if not self.username or self.password is None:
                msg = (
                    f"{ENV_PROTOCOL}={self.protocol} needs {ENV_USERNAME} and "
                    f"{ENV_PASSWORD} (or {ENV_PASSWORD}_FILE)"
                )
                raise KafkaSecurityError(msg)
        elif self.username or self.password is not None:
            # Credentials without SASL would silently not be used: refuse instead.
            msg = (
                f"Kafka SASL credentials are set but {ENV_PROTOCOL} is {self.protocol}; "
                "set it to SASL_SSL (or SASL_PLAINTEXT)"
            )
            raise KafkaSecurityError(msg)
        tls_files = (self.cafile, self.certfile, self.keyfile, self.key_password)
        if not self.tls and any(value is not None for value in tls_files):
            msg = (
                f"Kafka TLS files are set but {ENV_PROTOCOL} is {self.protocol}; "
                "set it to SASL_SSL (or SSL)"
            )
            raise KafkaSecurityError(msg)
        if (self.certfile is None) != (self.keyfile is None):
            msg = f"{ENV_CERTFILE} and {ENV_KEYFILE} go together: set both or neither"
            raise KafkaSecurityError(msg)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaSecurity:
        """The settings of this process, from the ``CIVIC_KAFKA_*`` variables (module doc)."""
        env = os.environ if environ is None else environ
        security = cls(
            protocol=(env.get(ENV_PROTOCOL) or "PLAINTEXT").strip().upper(),
            mechanism=(env.get(ENV_MECHANISM) or DEFAULT_MECHANISM).strip().upper(),
            username=env.get(ENV_USERNAME) or None,
            password=_secret(env, ENV_PASSWORD),
            cafile=_file(env, ENV_CAFILE),
            certfile=_file(env, ENV_CERTFILE),
            keyfile=_file(env, ENV_KEYFILE),
            key_password=_secret(env, ENV_KEY_PASSWORD),
        )
        try:  # read the certificate files now: a bad one stops the process at start
            security.ssl_context()
        except (ssl.SSLError, OSError) as error:
            msg = (
                f"{ENV_CAFILE}={security.cafile!r} / {ENV_CERTFILE}={security.certfile!r}: "
                f"not usable PEM certificates or key: {error}"
            )
            raise KafkaSecurityError(msg) from None
        return security

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context every client uses (None without TLS): TLS 1.2 or newer, the
        broker's certificate checked against the CA file (or the system's CAs) and its
        hostname verified; the client certificate when one is configured."""
        if not self.tls:
            return None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.cafile)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.certfile is not None:
            password = self.key_password.reveal() if self.key_password else None
            context.load_cert_chain(self.certfile, self.keyfile, password)
        return context

    def kafka_python(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's KafkaConsumer, KafkaProducer and
        KafkaAdminClient."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            options["ssl_context"] = self.ssl_context()
        if self.sasl:
            assert self.password is not None
            options["sasl_mechanism"] = self.mechanism
            options["sasl_plain_username"] = self.username
            options["sasl_plain_password"] = self.password.reveal()
        return options

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's AIOKafkaConsumer and AIOKafkaProducer."""
        # aiokafka names its options like kafka-python (it started as its port).
        return self.kafka_python()

    def describe(self) -> str:
        """A line for logs and error messages: never the password."""
        text = self.protocol
        if self.sasl:
            text += f", {self.mechanism} as user {self.username!r}"
        if self.tls:
            text += f", CA {self.cafile or 'system trust store'}"
            if self.certfile:
                text += f", client certificate {self.certfile}"
        return text

    def __repr__(self) -> str:
        return f"KafkaSecurity({self.describe()})"

    __str__ = describe


def resolve(security: KafkaSecurity | None) -> KafkaSecurity:
    """`security` itself, or this process's settings from the environment when None.

    Library functions take ``security=None`` and call this, so a caller that passes
    nothing still connects the way the process is configured.
    """
    return KafkaSecurity.from_env() if security is None else security

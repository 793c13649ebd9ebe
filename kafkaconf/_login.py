"""One connection to a broker, made the way the clients will make it, to tell a refused
login from a broker that is not there.

kafka-python reports a refused SASL login only in its log and retries until its bootstrap
times out, so a wrong password would look like a missing broker. Before a process starts
its clients it calls `check_login`: TLS handshake with the process's `ssl.SSLContext`,
then SaslHandshake and SaslAuthenticate (Kafka protocol, request header v1) with the
configured mechanism — SCRAM (RFC 5802, 7677) or PLAIN. Standard library only.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import secrets
import socket
import ssl
import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kafkaconf import KafkaSecurity

__all__ = ["KafkaLoginError", "check_login"]

_SASL_HANDSHAKE = 17
_SASL_AUTHENTICATE = 36
_CLIENT_ID = b"civicstream-login-check"


class KafkaLoginError(ConnectionError):
    """The broker answered and refused this process's TLS or SASL settings; the message
    says which and names the settings to check. Waiting cannot help."""


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            msg = "the broker closed the connection"
            raise ConnectionResetError(msg)
        data += chunk
    return data


def _call(sock: socket.socket, api_key: int, version: int, correlation: int, body: bytes) -> bytes:
    header = struct.pack(">hhih", api_key, version, correlation, len(_CLIENT_ID)) + _CLIENT_ID
    sock.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    response = _recv_exact(sock, size)
    if struct.unpack_from(">i", response)[0] != correlation:
        msg = "the broker answered another request"
        raise ConnectionError(msg)
    return response[4:]


def _string(value: str) -> bytes:
    data = value.encode()
    return struct.pack(">h", len(data)) + data


def _authenticate(sock: socket.socket, correlation: int, data: bytes) -> bytes:
    """One SaslAuthenticate v0 round; raises KafkaLoginError with the broker's message."""
    body = _call(sock, _SASL_AUTHENTICATE, 0, correlation, struct.pack(">i", len(data)) + data)
    error, length = struct.unpack_from(">hh", body)
    message = body[4 : 4 + length].decode(errors="replace") if length >= 0 else ""
    offset = 4 + max(length, 0)
    if error:
        raise KafkaLoginError(message or f"SASL authentication failed (error {error})")
    (size,) = struct.unpack_from(">i", body, offset)
    return body[offset + 4 : offset + 4 + max(size, 0)]


def _scram(sock: socket.socket, digest: str, user: str, password: str) -> None:
    nonce = base64.b64encode(secrets.token_bytes(18)).decode()
    name = user.replace("=", "=3D").replace(",", "=2C")
    first_bare = f"n={name},r={nonce}"
    server_first = _authenticate(sock, 2, f"n,,{first_bare}".encode()).decode()
    fields = dict(item.split("=", 1) for item in server_first.split(",") if "=" in item)
    if not fields.get("r", "").startswith(nonce) or "s" not in fields or "i" not in fields:
        msg = "SCRAM: the broker's first message is not valid"
        raise ConnectionError(msg)
    salted = hashlib.pbkdf2_hmac(
        digest, password.encode(), base64.b64decode(fields["s"]), int(fields["i"])
    )
    client_key = hmac.digest(salted, b"Client Key", digest)
    without_proof = f"c=biws,r={fields['r']}"
    auth_message = f"{first_bare},{server_first},{without_proof}".encode()
    signature = hmac.digest(hashlib.new(digest, client_key).digest(), auth_message, digest)
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    final = f"{without_proof},p={base64.b64encode(proof).decode()}"
    server_final = _authenticate(sock, 3, final.encode()).decode()
    server_key = hmac.digest(salted, b"Server Key", digest)
    expected = base64.b64encode(hmac.digest(server_key, auth_message, digest)).decode()
    if server_final != f"v={expected}":
        msg = "SCRAM: the broker's signature does not match: it does not know this password"
        raise KafkaLoginError(msg)


def _login(sock: socket.socket, security: KafkaSecurity) -> None:
    body = _call(sock, _SASL_HANDSHAKE, 1, 1, _string(security.mechanism))
    (error, count) = struct.unpack_from(">hi", body)
    if error:
        offered, offset = [], 6
        for _ in range(max(count, 0)):
            (length,) = struct.unpack_from(">h", body, offset)
            offered.append(body[offset + 2 : offset + 2 + length].decode())
            offset += 2 + length
        msg = f"the broker does not offer {security.mechanism} (it offers {', '.join(offered)})"
        raise KafkaLoginError(msg)
    assert security.username is not None and security.password is not None
    password = security.password.reveal()
    if security.mechanism == "PLAIN":
        _authenticate(sock, 2, f"\0{security.username}\0{password}".encode())
    else:
        digest = "sha512" if security.mechanism == "SCRAM-SHA-512" else "sha256"
        _scram(sock, digest, security.username, password)


def check_login(bootstrap: str, security: KafkaSecurity, timeout: float = 5.0) -> None:
    """Connect to the first bootstrap address that accepts connections and log in.

    Raises `KafkaLoginError` when the TLS handshake fails (the broker's certificate is not
    trusted, or the port does not speak TLS) or the broker refuses the SASL login, and
    `OSError` when no address accepts connections (the broker may still be starting).
    PLAINTEXT settings only check that a port is open.
    """
    last: OSError = ConnectionRefusedError(f"no bootstrap address in {bootstrap!r}")
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        try:
            with contextlib.ExitStack() as stack:
                sock = stack.enter_context(socket.create_connection((host, int(port)), timeout))
                sock.settimeout(timeout)
                context = security.ssl_context()
                if context is not None:
                    try:
                        sock = stack.enter_context(context.wrap_socket(sock, server_hostname=host))
                    except ssl.SSLError as error:
                        where = f"the TLS handshake with {host}:{port} failed"
                        msg = (
                            f"{where} ({security.describe()}): {error}. Check "
                            "CIVIC_KAFKA_SSL_CAFILE (the CA that signed the broker's "
                            "certificate) and CIVIC_KAFKA_SECURITY_PROTOCOL"
                        )
                        raise KafkaLoginError(msg) from None
                if security.sasl:
                    try:
                        _login(sock, security)
                    except KafkaLoginError as error:
                        msg = (
                            f"Kafka at {host}:{port} refused the login ({security.describe()})"
                            f": {error}. Check CIVIC_KAFKA_SASL_USERNAME, "
                            "CIVIC_KAFKA_SASL_PASSWORD (or CIVIC_KAFKA_SASL_PASSWORD_FILE) "
                            "and CIVIC_KAFKA_SASL_MECHANISM"
                        )
                        raise KafkaLoginError(msg) from None
                return
        except (OSError, ValueError, struct.error) as error:
            if isinstance(error, KafkaLoginError):
                raise
            last = error if isinstance(error, OSError) else ConnectionError(str(error))
    raise last

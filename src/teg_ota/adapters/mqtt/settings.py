"""How the device reaches ThingsBoard, checked once when the settings are made.

Validation lives here, not at connect time: a bad combination (TLS files without TLS) must
fail at start-up, where the operator sees it, not as a silent clear-text connection later.
"""

from __future__ import annotations

import math
import ssl
from dataclasses import dataclass
from pathlib import Path

from teg_ota.domain.core.jitter import ReconnectPolicy


@dataclass(frozen=True, slots=True, repr=False)
class MqttSettings:
    """How to reach ThingsBoard, and as which device.

    The credentials ThingsBoard offers: ``token``, the device access token (sent as the MQTT
    user name, no password); or MQTT basic credentials, ``client_id`` and/or ``username``
    with an optional ``password``; or an X.509 client certificate (``cert_file`` /
    ``key_file``, over TLS). A token and a user name exclude each other (the token *is* the
    user name), and a password needs a user name (MQTT 3.1.1).

    TLS files are only valid with ``tls=True`` (a CA file without TLS would silently send
    the credentials in clear text). ``key_file`` needs ``cert_file``. The token, the user
    name and the password never appear in ``repr`` (settings are logged at start-up).

    Spreading a fleet (domain/core/jitter.py): the first connection after start-up and the
    first reconnect after an established session wait a random moment in
    ``[0, connect_window_s)``, failed attempts a random delay up to the backoff step, and the
    OTA attribute request after a connect a random moment in
    ``[0, attribute_request_window_s)``. ``jitter=False`` is the old schedule, for
    comparison only. Refused credentials are retried every ``refused_retry_s``, unjittered.
    """

    host: str = "localhost"
    port: int = 1883
    token: str | None = None
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | str | None = None
    cert_file: Path | str | None = None
    key_file: Path | str | None = None
    client_id: str | None = None
    keepalive: int = 60
    connect_backoff_initial_s: float = 1.0
    connect_backoff_max_s: float = 60.0
    refused_retry_s: float = 600.0
    connect_window_s: float = 10.0
    attribute_request_window_s: float = 2.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("MQTT host is empty")
        if not 0 < self.port < 65536:
            raise ValueError(f"MQTT port {self.port} is out of range")
        if not 0 <= self.keepalive <= 65535:
            raise ValueError(f"MQTT keepalive {self.keepalive} is out of range")
        if self.connect_backoff_initial_s <= 0 or self.connect_backoff_max_s <= 0:
            raise ValueError("connect backoffs must be positive")
        if self.connect_backoff_max_s < self.connect_backoff_initial_s:
            raise ValueError("connect_backoff_max_s is below connect_backoff_initial_s")
        if self.refused_retry_s <= 0:
            raise ValueError("refused_retry_s must be positive")
        for name in ("connect_window_s", "attribute_request_window_s"):
            window = getattr(self, name)
            if not (math.isfinite(window) and window >= 0):
                raise ValueError(f"{name} {window} is not a number of seconds >= 0")
        if not self.tls and (self.ca_file or self.cert_file or self.key_file):
            raise ValueError("ca_file / cert_file / key_file need tls=True")
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file")
        if self.token is not None and self.username is not None:
            raise ValueError(
                "token and username exclude each other: the access token is the MQTT user name"
            )
        if self.password is not None and self.username is None:
            raise ValueError("password needs username")

    @property
    def reconnect_policy(self) -> ReconnectPolicy:
        """The reconnect schedule these settings give (domain/core/jitter.py)."""
        return ReconnectPolicy(
            initial_s=self.connect_backoff_initial_s,
            max_s=self.connect_backoff_max_s,
            window_s=self.connect_window_s,
            jitter=self.jitter,
        )

    @property
    def auth(self) -> tuple[str, str | None] | None:
        """``(user name, password)`` for the CONNECT packet; ``None``: none is sent."""
        if self.token is not None:
            return self.token, None
        if self.username is not None:
            return self.username, self.password
        return None

    @property
    def credentials_kind(self) -> str:
        """What ThingsBoard checks on CONNECT, in words, for log lines (never the values)."""
        if self.token is not None:
            return "the access token"
        if self.username is not None or (self.client_id and not self.cert_file):
            return "the MQTT basic credentials"
        if self.cert_file:
            return "the client certificate"
        return "the anonymous connection"

    def __repr__(self) -> str:
        """Credentials: settings are logged at start-up, the token, the user name and the
        password never are (``'***'`` says one is set)."""
        token, username, password = (
            None if value is None else "***" for value in (self.token, self.username, self.password)
        )
        return (
            f"MqttSettings(host={self.host!r}, port={self.port!r}, token={token!r}, "
            f"username={username!r}, password={password!r}, "
            f"tls={self.tls!r}, ca_file={self.ca_file!r}, cert_file={self.cert_file!r}, "
            f"key_file={self.key_file!r}, client_id={self.client_id!r}, "
            f"keepalive={self.keepalive!r}, "
            f"connect_backoff_initial_s={self.connect_backoff_initial_s!r}, "
            f"connect_backoff_max_s={self.connect_backoff_max_s!r}, "
            f"refused_retry_s={self.refused_retry_s!r}, "
            f"connect_window_s={self.connect_window_s!r}, "
            f"attribute_request_window_s={self.attribute_request_window_s!r}, "
            f"jitter={self.jitter!r})"
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context (``None`` without TLS). Raises OSError / ssl.SSLError on bad files.

        Built from the files here so that unreadable or mismatched TLS files fail the link's
        ``start()`` at once instead of every connection attempt, forever, in the background.
        """
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file:
            context.load_cert_chain(
                str(self.cert_file), str(self.key_file) if self.key_file else None
            )
        return context

"""The git adapter's pure credential helpers: what is a secret, what the transport gets, which
server may get it, and that no message or reflog line still holds it.

What dulwich and the file system make of them (a real HTTP remote behind basic auth, an
older clone migrated) is in tests/integration/test_git_credentials.py.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from teg_ota.adapters.git.credentials import (
    REDACTED,
    credentials_for,
    describe,
    origin_of,
    redact_url,
    scrub,
    scrub_reflog_text,
    secrets_of,
    split_credentials,
)

LEAKY = "https://deploy:s3cret%21@git.example.invalid/ctl.git"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:s3cret@host/x.git", "http://host/x.git"),
        ("https://token@host:8443/x.git", "https://host:8443/x.git"),
        ("https://host/x.git", "https://host/x.git"),
        ("/srv/git/x.git", "/srv/git/x.git"),
        ("git@github.com:org/x.git", "git@github.com:org/x.git"),
        (
            "error at https://u:p%40ss@h/x and ssh://me:pw@h2/y",
            "error at https://h/x and ssh://h2/y",
        ),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        (LEAKY, ["deploy:s3cret%21", "deploy:s3cret!", "s3cret%21", "s3cret!"]),
        ("https://tok%2Fen@host/x", ["tok%2Fen", "tok/en"]),  # a user name alone is a token
        ("ssh://git:pw@host/x", ["git:pw", "pw"]),
        ("ssh://git@host/x", []),  # an SSH user name is no secret
        ("https://host/x", []),
        ("/srv/git/x.git", []),
        ("git@github.com:org/x.git", []),
        ("http://[::1", []),  # unparsable: nothing to find, no exception
        (None, []),
        ("", []),
    ],
)
def test_secrets_of(url: str | None, secrets: list[str]) -> None:
    assert secrets_of(url) == secrets


@pytest.mark.parametrize(
    ("url", "split"),
    [
        (LEAKY, ("https://git.example.invalid/ctl.git", "deploy", "s3cret!")),
        ("https://tok%2Fen@host:8443/x", ("https://host:8443/x", "tok/en", None)),
        ("HTTPS://U:P@H/x", ("HTTPS://H/x", "U", "P")),
        # SSH needs its user name in the URL; only the password goes to the transport.
        ("ssh://git:pw@host:2222/x", ("ssh://git@host:2222/x", None, "pw")),
        ("ssh://git@host/x", ("ssh://git@host/x", None, None)),
        ("https://host/x", ("https://host/x", None, None)),
        ("file:///srv/x.git", ("file:///srv/x.git", None, None)),
        ("/srv/x.git", ("/srv/x.git", None, None)),
        ("git@github.com:org/x.git", ("git@github.com:org/x.git", None, None)),
        ("http://u:p@[::1", ("http://u:p@[::1", None, None)),
    ],
)
def test_split_credentials(url: str, split: tuple[str, str | None, str | None]) -> None:
    assert split_credentials(url) == split


_UNRESERVED = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()+,;=",
    min_size=1,
    max_size=20,
)


@settings(max_examples=200, deadline=None)
@given(user=_UNRESERVED, password=_UNRESERVED)
def test_credentials_come_out_of_the_url_and_out_of_any_message(user: str, password: str) -> None:
    url = f"https://{quote(user, safe='')}:{quote(password, safe='')}@git.example:8443/c.git"
    assert split_credentials(url) == ("https://git.example:8443/c.git", user, password)
    # Masking wins over legibility: a short secret is masked wherever it appears.
    assert password not in scrub(f"cannot reach {url}; password was {password}", url)


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://Host.Example/x", ("https", "host.example", 443)),
        ("HTTP://h/x", ("http", "h", 80)),
        ("http://h:8080/x", ("http", "h", 8080)),
        ("ssh://git@h/x", ("ssh", "h", 22)),
        ("git+ssh://h:2222/x", ("git+ssh", "h", 2222)),
        ("file:///srv/x.git", None),
        ("/srv/x.git", None),
        ("git@github.com:org/x.git", None),
        ("http://h:99999/x", None),  # an invalid port is no origin
    ],
)
def test_origin_of(url: str, origin: tuple[str, str, int] | None) -> None:
    assert origin_of(url) == origin


@pytest.mark.parametrize(
    ("own", "remote", "credentials"),
    [
        ("https://u:tok@h/x", "https://h/x", ("u", "tok")),
        ("https://u:tok@h/x", "https://H:443/other.git", ("u", "tok")),  # same origin
        ("ssh://git:pw@h/x", "ssh://git@h:22/x", (None, "pw")),
        # A token is never sent to another server: scheme, host or port differ.
        ("https://u:tok@h/x", "http://h/x", (None, None)),
        ("https://u:tok@h/x", "https://h:8443/x", (None, None)),
        ("https://u:tok@h/x", "https://elsewhere/x", (None, None)),
        # The configured URL has its own credentials: those are used, not ours.
        ("https://u:tok@h/x", "https://v:other@h/x", (None, None)),
        (None, "https://h/x", (None, None)),
        ("https://h/x", "https://h/x", (None, None)),
        ("/srv/x.git", "/srv/x.git", (None, None)),
    ],
)
def test_credentials_for(
    own: str | None, remote: str, credentials: tuple[str | None, str | None]
) -> None:
    assert credentials_for(own, remote) == credentials


def test_scrub_masks_the_given_urls_secrets_outside_urls_too() -> None:
    text = f"cannot reach {LEAKY} (user deploy, password s3cret!)"
    assert scrub(text, LEAKY) == (
        f"cannot reach https://git.example.invalid/ctl.git (user deploy, password {REDACTED})"
    )
    # Any URL's userinfo goes even without naming the URL; unrelated text is left alone.
    assert scrub("at http://a:b@h/x and s3cret!") == "at http://h/x and s3cret!"
    assert scrub("nothing secret", None, LEAKY) == "nothing secret"


def test_describe_is_one_credential_free_line() -> None:
    exc = OSError(f"cannot reach {LEAKY} (password s3cret!)\nsecond line {LEAKY}")
    assert describe(exc, LEAKY) == (
        f"OSError: cannot reach https://git.example.invalid/ctl.git (password {REDACTED})"
    )
    assert describe(KeyError()) == "KeyError"
    assert describe(ValueError("  \n ")) == "ValueError"


def test_scrub_reflog_text_touches_only_the_messages() -> None:
    ids = "0" * 40 + " " + "1" * 40
    identity = "deploy:s3cret! <deploy:s3cret!@example.invalid> 1700000000 +0000"
    text = (
        f"{ids} {identity}\tclone: from {LEAKY}\n"
        f"{ids} {identity}\tfetch: from https://git.example.invalid/ctl.git\n"
    )
    assert scrub_reflog_text(text, LEAKY) == (
        f"{ids} {identity}\tclone: from https://git.example.invalid/ctl.git\n"
        f"{ids} {identity}\tfetch: from https://git.example.invalid/ctl.git\n"
    )
    assert scrub_reflog_text("", LEAKY) == ""

"""Keep credentials out of every text parallelzarr produces (plans, messages, reports, JSON).

Credentials reach parallelzarr in two ways: as ``storage_options`` values (``key``, ``secret``,
``token``, ``password``... possibly nested, e.g. ``client_kwargs``) and embedded in URLs
(``s3://KEY:SECRET@bucket/x``, ``https://host/x?X-Amz-Signature=...``). :func:`redact` removes both
from a text; :func:`secret_values` collects the values of secret-looking options so that messages
built from third-party exceptions can be cleaned of them too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["MASK", "redact", "redact_url", "secret_values", "is_secret_key", "url_credentials"]

#: What a removed credential is replaced with.
MASK = "***"

_SECRET_KEY = re.compile(
    r"(^key$|_key$|^key_|secret|token|passw|pwd|credential|auth|signature|session|sas|cookie|private)",
    re.IGNORECASE,
)
#: ``scheme://userinfo@`` of a URL (userinfo up to the first ``/`` or ``@``).
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s]*)@")
#: Secret-looking query parameters of URLs (presigned URLs, SAS tokens).
_QUERY = re.compile(
    r"(?P<name>[?&](?:[A-Za-z0-9\-]*(?:signature|token|secret|credential|password|sig|key)[A-Za-z0-9\-]*))=[^&#\s'\"]*",
    re.IGNORECASE,
)
#: Shortest option value that is replaced wherever it occurs in a text (shorter values are too
#: likely to be ordinary words; they are still never printed as option values).
MIN_SECRET_LENGTH = 4


def is_secret_key(key: Any) -> bool:
    """Whether a storage option named ``key`` holds a credential (``key``, ``secret``, ``token``...)."""
    return bool(_SECRET_KEY.search(str(key)))


def secret_values(options: Mapping[str, Any] | None) -> list[str]:
    """The values of secret-looking entries of ``options`` (nested mappings and lists included).

    Parameters
    ----------
    options
        fsspec ``storage_options`` (or any mapping); ``None`` gives an empty list.

    Returns
    -------
    list of str
        Longest first, so that a value containing another is replaced whole.
    """
    found: set[str] = set()

    def walk(value: Any, secret: bool) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, secret or is_secret_key(k))
        elif isinstance(value, list | tuple | set):
            for v in value:
                walk(v, secret)
        elif secret and value is not None and not isinstance(value, bool):
            text = str(value)
            if len(text) >= MIN_SECRET_LENGTH:
                found.add(text)

    walk(options or {}, False)
    return sorted(found, key=lambda s: (-len(s), s))


def url_credentials(url: str) -> list[str]:
    """The credentials embedded in ``url`` (its userinfo, whole and split at ``:``), if any."""
    out: list[str] = []
    for m in _USERINFO.finditer(url):
        info = m.group("userinfo")
        if info:
            out.append(info)
            out += [p for p in info.split(":") if len(p) >= MIN_SECRET_LENGTH]
    return out


def redact_url(url: str) -> str:
    """``url`` without embedded credentials: userinfo and secret query parameters become ``***``."""
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@" if m.group("userinfo") else m.group(0), url)
    return _QUERY.sub(lambda m: f"{m.group('name')}={MASK}", text)


def redact(
    text: Any,
    options: Mapping[str, Any] | None = None,
    extra: Iterable[str] = (),
) -> str:
    """``str(text)`` with credentials removed.

    Parameters
    ----------
    text
        A message, plan text, JSON document... (converted with ``str``).
    options
        ``storage_options`` whose secret values must not appear.
    extra
        Further secret strings (e.g. from :func:`url_credentials` of the URLs involved).

    Returns
    -------
    str
        The text with URL userinfo, secret query parameters and every secret value replaced by ``***``.
    """
    out = str(text)
    secrets = set(secret_values(options)) | {s for s in extra if s and len(s) >= MIN_SECRET_LENGTH}
    secrets |= set(url_credentials(out))
    for secret in sorted(secrets, key=lambda s: (-len(s), s)):
        out = out.replace(secret, MASK)
    return redact_url(out)

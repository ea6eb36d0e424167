"""Passwords never leave in text: every form a database URL can carry one in, masked as ***.
Pure.

A password reaches campaigns in a URL's user part (`scheme://user:PASSWORD@host`), in its
query (`?password=...`, `&sslpassword=...`, the name %-escaped or not), or in a libpq
key=value string (`host=db password=... ` or `password='with spaces'`). Any setting whose
name says secret (password, passwd, pwd, pass, secret, token, credential, api key) is
masked, whatever database or program it is meant for.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

#: Parts of setting names that hold secrets (compared in lower case, %-escapes decoded).
_SECRET_PARTS = ("password", "passwd", "secret", "token", "credential", "apikey", "api_key")
_SECRET_NAMES = frozenset({"pass", "pwd", "pw"})

#: A password in anything that looks like a URL: scheme://user:PASSWORD@host (up to the
#: last @ before the path, so an unescaped @ in the password is masked too).
_PASSWORD_IN_URL = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)[^\s/]*(?=@)")
#: A setting in a URL's query: ?name=value or &name=value (or ;name=value).
_QUERY_SETTING = re.compile(r"(?P<head>[?&;](?P<key>[^=&#\s?;]+)=)(?P<value>[^&#\s;]*)")
#: A libpq-style setting: name=value or name = 'quoted value' (not inside a URL's query).
_KEY_VALUE = re.compile(
    r"(?P<head>(?<![\w%?&;.])(?P<key>[A-Za-z_][\w%\-]*)\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'?|[^\s']*)"
)


def is_secret_key(name: str) -> bool:
    """True when a setting called `name` holds a secret (`password`, `sslpassword`, ...)."""
    key = unquote_plus(name).strip().lower()
    return key in _SECRET_NAMES or any(part in key for part in _SECRET_PARTS)


def _masked(match: re.Match[str]) -> str:
    if is_secret_key(match["key"]) and match["value"]:
        return match["head"] + "***"
    return match[0]


def mask_passwords(text: str) -> str:
    """`text` with every password of a URL, and every secret setting, replaced by ***."""
    text = _PASSWORD_IN_URL.sub(r"\g<head>***", text)
    text = _QUERY_SETTING.sub(_masked, text)
    return _KEY_VALUE.sub(_masked, text)


#: Whatever stands between a colon and an @: the password of a URL too broken to parse.
_PASSWORD_LIKE = re.compile(r"(?<=:)[^:@\s/]+(?=@)")


def mask_unparsed(text: str) -> str:
    """A text that was meant as a URL, with anything that may be a password masked."""
    return _PASSWORD_LIKE.sub("***", mask_passwords(text))


def secrets_in(text: str) -> list[str]:
    """The secret values `mask_passwords` hides in `text`, as written and %-decoded: to
    redact them from messages that quote them some other way."""
    found: list[str] = []
    for match in _PASSWORD_IN_URL.finditer(text):
        found.append(text[match.end("head") : match.end()])
    for pattern in (_QUERY_SETTING, _KEY_VALUE):
        for match in pattern.finditer(text):
            if is_secret_key(match["key"]) and match["value"]:
                found.append(match["value"].strip("'"))
    decoded = [unquote_plus(value) for value in found]
    return sorted({value for value in found + decoded if value}, key=len, reverse=True)

"""Passwords never leave in text: every URL's password masked as ***. Pure."""

from __future__ import annotations

import re

#: A password in anything that looks like a URL: scheme://user:PASSWORD@host
_PASSWORD_IN_URL = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)[^@\s]*(?=@)")


def mask_passwords(text: str) -> str:
    """`text` with the password of every URL in it replaced by ***."""
    return _PASSWORD_IN_URL.sub(r"\g<head>***", text)


#: Whatever stands between a colon and an @: the password of a URL too broken to parse.
_PASSWORD_LIKE = re.compile(r"(?<=:)[^:@\s/]+(?=@)")


def mask_unparsed(text: str) -> str:
    """A text that was meant as a URL, with anything that may be a password masked."""
    return _PASSWORD_LIKE.sub("***", mask_passwords(text))

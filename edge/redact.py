"""Credentials out of everything printed or published: camera and broker URLs often carry them.

IP cameras take them in the user info (``rtsp://admin:PASSWORD@cam``) and just as often in the query
(``http://cam/video.cgi?user=admin&password=PASSWORD``, ``?token=...``). Both are masked wherever a
URL is shown: the JSON ``source`` field, log lines, error messages, ``--check-config``.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, urlsplit

MASK = "***"
# Query and fragment keys whose values are secrets, compared lower-case without - and _: a key
# equal to one of these, ending in one (api_key, access_token, x-amz-signature) or, for the
# first four, starting with one (passphrase, authorization).
SECRET_KEYS = ("password", "passwd", "pass", "pwd", "secret", "token", "key", "auth", "signature", "sig",
               "credential", "credentials")
SECRET_PREFIXES = ("pass", "secret", "token", "auth")
URL_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
TRAILING_PUNCTUATION = ".,;:!?)]}"
_PAIR_SEPARATORS = re.compile(r"([&;])")


def is_secret_key(name: str) -> bool:
    key = unquote_plus(name).lower().replace("-", "").replace("_", "")
    return any(key == word or key.endswith(word) for word in SECRET_KEYS) or key.startswith(SECRET_PREFIXES)


def redact_url(url: str) -> str:
    """``url`` with the password of its user info and the values of secret query keys replaced by ``***``.

    Never raises: a URL too malformed to parse is masked by pattern instead (it is still shown in an error).
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return _redact_loosely(url)
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at:
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if colon else netloc
    query, fragment = _redact_pairs(parts.query), _redact_pairs(parts.fragment)
    if (netloc, query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return url  # untouched, byte for byte (urlunsplit would normalise it)
    head = f"{parts.scheme}:" if parts.scheme else ""
    if netloc or url.startswith(head + "//"):
        head += f"//{netloc}"
    text = head + parts.path
    return text + (f"?{query}" if query or "?" in url else "") + (f"#{fragment}" if fragment else "")


def redact_text(text: str) -> str:
    """Every URL inside ``text`` (a log line, an error message) redacted."""
    if "://" not in text:
        return text
    return URL_PATTERN.sub(_redact_match, text)


def _redact_match(match: re.Match) -> str:
    url = match.group(0)
    kept = url.rstrip(TRAILING_PUNCTUATION)  # "see http://cam/x?pwd=1." ends the sentence, not the password
    return redact_url(kept) + url[len(kept):]


def _redact_pairs(text: str) -> str:
    pieces = _PAIR_SEPARATORS.split(text)
    for index in range(0, len(pieces), 2):  # odd indices are the separators themselves
        name, equals, _value = pieces[index].partition("=")
        if equals and is_secret_key(name):
            pieces[index] = f"{name}={MASK}"
    return "".join(pieces)


def _redact_loosely(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _redact_pairs(url)
    authority, slash, tail = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if at:
        authority = f"{userinfo.partition(':')[0]}:{MASK}@{host}"
    path, question, query = tail.partition("?")
    return f"{scheme}://{authority}{slash}{path}{question}{_redact_pairs(query)}"

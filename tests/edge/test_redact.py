"""Credentials out of URLs: user info, secret query and fragment keys, URLs inside text, malformed URLs."""

from __future__ import annotations

import pytest

from edge.redact import is_secret_key, redact_text, redact_url


@pytest.mark.parametrize("url, shown", [
    ("rtsp://admin:s3cret@cam.local:554/h264", "rtsp://admin:***@cam.local:554/h264"),
    ("http://cam.local/video.mjpg", "http://cam.local/video.mjpg"),
    ("http://10.0.0.5/video.cgi?user=admin&password=s3cr%26t&resolution=640", "http://10.0.0.5/video.cgi?user=admin&password=***&resolution=640"),
    ("rtsp://cam/live?pwd=1;channel=2", "rtsp://cam/live?pwd=***;channel=2"),
    ("https://cam/api?api_key=A1&access_token=T2&X-Amz-Signature=S3&keyframe=9", "https://cam/api?api_key=***&access_token=***&X-Amz-Signature=***&keyframe=9"),
    ("http://cam/#access_token=abc", "http://cam/#access_token=***"),
    ("rtsp://admin:p@ss@cam/", "rtsp://admin:***@cam/"),  # an @ inside the password
    ("rtsp://admin@cam/", "rtsp://admin@cam/"),  # a user name alone is not a secret
    ("mqtt://", "mqtt://"),
    ("http://cam/?", "http://cam/?"),
    ("mqtt://cam:pw@[not-ipv6/x?token=1", "mqtt://cam:***@[not-ipv6/x?token=***"),  # unparsable: masked by pattern
    ("mqtt://cam:pw@host:notaport", "mqtt://cam:***@host:notaport"),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown


@pytest.mark.parametrize("key, secret", [
    ("password", True), ("Pass", True), ("PWD", True), ("passwd", True), ("Pass-Phrase", True), ("token", True),
    ("auth", True), ("Authorization", True), ("client_secret", True), ("sig", True), ("credentials", True),
    ("user", False), ("username", False), ("channel", False), ("keyframe", False), ("resolution", False),
])
def test_secret_keys(key, secret):
    assert is_secret_key(key) is secret


def test_urls_inside_text_are_redacted():
    text = "cannot open stream http://u:pw1@cam/x?token=tk2; fell back to 'rtsp://v:pw3@cam2/live' (see /var/log/x)"
    assert redact_text(text) == ("cannot open stream http://u:***@cam/x?token=***; fell back to 'rtsp://v:***@cam2/live' "
                                 "(see /var/log/x)")
    assert redact_text("no URL here: password=shown") == "no URL here: password=shown"
    assert redact_text("cannot open http://cam/x?pwd=1: refused.") == "cannot open http://cam/x?pwd=***: refused."

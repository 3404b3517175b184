"""schemas.secrets: the one Secret type and the one redactor of URLs and messages."""

from __future__ import annotations

import pickle

import pytest

from schemas.secrets import MASK, Secret, redact_text, redact_url


@pytest.mark.parametrize(("url", "shown"), [
    ("http://user:s3cret@registry:8081", f"http://user:{MASK}@registry:8081"),
    ("http://user:p@ss@registry:8081/x", f"http://user:{MASK}@registry:8081/x"),
    ("postgresql://lf@db/leadflow?password=s3cret&sslmode=require",
     f"postgresql://lf@db/leadflow?password={MASK}&sslmode=require"),
    ("https://hooks.example/alert?token=s3cret#top", f"https://hooks.example/alert?token={MASK}#top"),
    ("https://hooks.example/alert?api_key=s3cret;x=1", f"https://hooks.example/alert?api_key={MASK};x=1"),
    ("http://[::1:8081?access_token=s3cret", f"http://[::1:8081?access_token={MASK}"),  # urlsplit refuses it
    ("sqlite:///var/leadflow.db", "sqlite:///var/leadflow.db"),
    ("not a url: pw", "not a url: pw"),
])
def test_redact_url_masks_passwords_and_secret_query_values(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url)


def test_redact_text_masks_what_a_library_quotes_from_the_url() -> None:
    url = "postgresql://lf:pw%zzsecret@127.0.0.1/test?password=other%20one"
    message = ('invalid percent-encoded token: pw%zzsecret; also "other one" and other%20one; '
               "conninfo: host=db password=hunter2 user=lf; see http://a:b-secret@c/d")
    clean = redact_text(message, url)
    for secret in ("pw%zzsecret", "other one", "other%20one", "hunter2", "b-secret"):
        assert secret not in clean
    assert "invalid percent-encoded token" in clean and "user=lf" in clean
    assert redact_text("token leaked: abc123", Secret("abc123")) == f"token leaked: {MASK}"


def test_a_secret_never_shows_itself() -> None:
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret) + str(secret) + f"{secret}" + repr([secret])
    assert secret.reveal() == "hunter2" and Secret(b"k").reveal() == b"k"
    assert secret == Secret("hunter2") and secret != Secret("other")
    with pytest.raises(TypeError):
        pickle.dumps(secret)

"""services/spamfilter.py without rspamd: the action table, the header fields, forged-field
removal, and config validation (the end-to-end tests with a real rspamd: tests/e2e/test_rspamd.py)."""

from __future__ import annotations

import pytest

from postoffice import config as config_module
from postoffice.config import Config, ConfigError
from postoffice.services.spamfilter import ACCEPT, JUNK, REJECT, TEMPFAIL, SpamVerdict, strip_spam_fields


@pytest.mark.parametrize(("action", "decision"), [
    ("no action", ACCEPT), ("greylist", TEMPFAIL), ("soft reject", TEMPFAIL), ("add header", JUNK),
    ("rewrite subject", JUNK), ("reject", REJECT), ("some future action", ACCEPT),
])
def test_actions(action: str, decision: str) -> None:
    assert SpamVerdict(action, 1.0).decision() == decision


def test_failure_follows_on_failure() -> None:
    down = SpamVerdict("unknown", error="refused")
    assert down.failed
    assert down.decision("accept") == ACCEPT and down.decision("tempfail") == TEMPFAIL
    assert down.headers() == b"X-Spam-Status: unknown (the spam filter could not be reached)\r\n"


def test_headers() -> None:
    assert SpamVerdict("rewrite subject", 7.5, 15.0).headers() == (
        b"X-Spam-Status: Yes, score=7.50 required=15.00\r\nX-Spam-Flag: YES\r\nX-Spam-Score: 7.50\r\n"
        b"X-Spam-Action: rewrite subject\r\n")
    assert SpamVerdict("no action", -0.5).headers() == (
        b"X-Spam-Status: No, score=-0.50\r\nX-Spam-Score: -0.50\r\nX-Spam-Action: no action\r\n")


def test_forged_fields_are_removed_with_their_continuation_lines() -> None:
    block = (b"From: a@example.org\r\nX-Spam-Status: No,\r\n\tscore=-50\r\nSubject: hi\r\n"
             b"x-spam-FLAG: NO\r\nX-Spam-Score: -50\r\nX-Spam-Action: no action\r\nX-Spammy: kept\r\n"
             b"Received: x\r\n\tcontinued\r\n\r\n")
    assert strip_spam_fields(block) == (b"From: a@example.org\r\nSubject: hi\r\nX-Spammy: kept\r\n"
                                        b"Received: x\r\n\tcontinued\r\n\r\n")
    assert strip_spam_fields(b"From: a@example.org\r\nX-Spammy: 1\r\n\r\n") is None


@pytest.mark.parametrize("bad", [{"on_failure": "drop"}, {"rspamd": "127.0.0.1:11333"}, {"timeout": 0}])
def test_config_is_checked(bad: dict[str, object]) -> None:
    config = config_module._build(Config, {"filter": bad}, "test", "")
    with pytest.raises(ConfigError, match="filter"):
        config_module.validate(config)


def test_filtering_is_off_by_default() -> None:
    assert config_module.load(None, env={}).filter.rspamd == ""


def test_which_moves_teach_rspamd() -> None:
    from types import SimpleNamespace as Box

    from postoffice.services.spamfilter import RspamdLearner

    inbox, junk, trash = Box(name="INBOX", special_use=None), Box(name="Junk", special_use="\\Junk"), \
        Box(name="Deleted", special_use="\\Trash")
    spam_folder, archive = Box(name="Spam", special_use=None), Box(name="Archive", special_use="\\Archive")
    kind = RspamdLearner.kind_of_move
    assert kind(inbox, junk) == "spam" and kind(archive, spam_folder) == "spam" and kind(trash, junk) == "spam"
    assert kind(junk, inbox) == "ham" and kind(spam_folder, archive) == "ham"
    assert kind(junk, trash) is None and kind(junk, spam_folder) is None and kind(inbox, archive) is None
    assert kind(inbox, trash) is None

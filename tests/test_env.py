"""Environment variables: one parser, the same spellings everywhere, errors that name the variable."""

import pytest

from t2i_lib import env


def test_flags_and_integers_parse_one_way(monkeypatch):
    for value, expected in (("1", True), ("YES", True), ("on", True), ("0", False), ("", False), ("off", False)):
        monkeypatch.setenv("T2I_OFFLINE", value)
        assert env.offline() is expected
    monkeypatch.setenv("T2I_OFFLINE", "maybe")
    with pytest.raises(ValueError, match="T2I_OFFLINE='maybe'.*set it to 1 or 0"):
        env.offline()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two' is not a whole number"):
        env.world_size()

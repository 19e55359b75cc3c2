"""The shared episode bookkeeping behind "WARNING once per episode, INFO on recovery"."""

from pykaf._client._episodes import Episodes


def test_first_failure_begins_an_episode_repeats_count_and_success_ends_it() -> None:
    episodes: Episodes[str] = Episodes()
    assert "b1" not in episodes
    first = episodes.failed("b1", 10.0)
    assert (first.since, first.failures) == (10.0, 1)
    again = episodes.failed("b1", 12.5)
    assert again is first
    assert (again.since, again.failures) == (10.0, 2)
    assert "b1" in episodes
    assert "b2" not in episodes
    assert (episodes.failures("b1"), episodes.failures("b2")) == (2, 0)
    ended = episodes.ended("b1")
    assert ended is not None
    assert ended.failures == 2
    assert "b1" not in episodes
    assert episodes.ended("b1") is None  # nothing to report twice


def test_a_new_failure_after_recovery_begins_a_new_episode() -> None:
    episodes: Episodes[int] = Episodes()
    episodes.failed(1, 0.0)
    episodes.ended(1)
    assert episodes.failed(1, 5.0).failures == 1

"""The known-good history rule (``domain.core.known_good``): which versions passed their
health gate, newest first, and why repeated rollbacks walk back instead of forward.

The store only keeps the list (tests/integration/version_store/); every way it changes is
here.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from teg_ota.domain.core.known_good import MAX_HISTORY, after_success, newest, rollback_target


def commit_all(versions: Sequence[str], history: Sequence[str] = ()) -> tuple[str, ...]:
    """The history after each version passed its health gate, in order."""
    result = tuple(history)
    for version in versions:
        result = after_success(result, version)
    return result


# -- after_success -------------------------------------------------------------------------


def test_the_first_success_starts_the_history() -> None:
    assert after_success((), "v1.0.0") == ("v1.0.0",)
    assert after_success([], "v1.0.0") == ("v1.0.0",)


def test_a_new_version_keeps_the_one_it_replaces_as_the_second() -> None:
    history = after_success(("v1.0.0",), "v2.0.0")
    assert history == ("v2.0.0", "v1.0.0")
    # The same again (recovery re-commits): nothing moves.
    assert after_success(history, "v2.0.0") == history
    assert after_success(history, "v3.0.0") == ("v3.0.0", "v2.0.0", "v1.0.0")


def test_the_newest_again_changes_nothing() -> None:
    history = commit_all(["v1", "v2", "v3", "v4"])
    assert history == ("v4", "v3", "v2", "v1")
    assert after_success(history, "v4") == history
    assert after_success(("v1",), "v1") == ("v1",)


def test_two_rollbacks_in_a_row_go_back_two_versions() -> None:
    history = commit_all(["v1.0", "v1.1", "v1.2"])  # three successful updates
    assert history == ("v1.2", "v1.1", "v1.0")

    # teg-ota rollback while v1.2 runs: v1.1 (the previous known-good) is started, passes.
    target = rollback_target(history, running="v1.2")
    assert target == "v1.1"
    history = after_success(history, target)
    assert history == ("v1.1", "v1.0")

    # A second rollback goes further back, not forward to v1.2 again.
    target = rollback_target(history, running="v1.1")
    assert target == "v1.0"
    history = after_success(history, target)
    assert history == ("v1.0",)
    assert rollback_target(history, running="v1.0") is None  # nothing older is known


def test_an_older_version_that_is_not_the_second_is_pushed_on_top() -> None:
    history = commit_all(["v1", "v2", "v3", "v4"])
    # Not the second entry: pushed, its old entry removed (no duplicates).
    assert after_success(history, "v2") == ("v2", "v4", "v3", "v1")
    assert after_success(history, "v1") == ("v1", "v4", "v3", "v2")


def test_the_history_is_bounded() -> None:
    assert MAX_HISTORY == 10
    history = commit_all([f"v10.{i}" for i in range(20)])
    assert history == tuple(f"v10.{i}" for i in reversed(range(10, 20)))
    assert len(history) == MAX_HISTORY
    assert after_success(history, "v11") == ("v11", *history[:-1])
    # An entry pushed from inside a full history: nothing falls off.
    assert after_success(history, history[5]) == (history[5], *history[:5], *history[6:])


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_a_custom_limit_cuts_the_history(limit: int) -> None:
    history = ("v3", "v2", "v1")
    assert after_success(history, "v4", limit) == ("v4", "v3", "v2", "v1")[:limit]
    assert after_success(history, "v4", limit=limit)[0] == "v4"


def test_versions_are_compared_exactly() -> None:
    """Normalising (a commit hash in lower case) is the store's job, before the rule."""
    assert after_success(("abc",), "ABC") == ("ABC", "abc")


def test_the_input_is_not_changed_and_a_tuple_comes_back() -> None:
    history = ["v3", "v2", "v1"]
    for version in ("v3", "v2", "v1", "v4"):
        result = after_success(history, version)
        assert isinstance(result, tuple)
        assert history == ["v3", "v2", "v1"]


def test_a_migrated_history_walks_back_like_any_other() -> None:
    """An older release left only the known-good and previous text files: the store seeds
    the history with those two, and the rule carries on from there."""
    history = after_success(("v1.1", "v1.0"), "v1.2")
    assert history == ("v1.2", "v1.1", "v1.0")
    history = after_success(history, "v1.1")  # rollback
    history = after_success(history, "v1.0")  # rollback again: the migrated entry is known
    assert history == ("v1.0",)


_versions = st.sampled_from([f"v{i}" for i in range(15)])
_histories = st.lists(_versions, unique=True, max_size=MAX_HISTORY)


@settings(max_examples=300, deadline=None)
@given(_histories, _versions)
def test_after_success_properties(history: list[str], version: str) -> None:
    result = after_success(history, version)
    assert result[0] == version  # the version is the newest known-good
    assert len(set(result)) == len(result)  # no duplicates
    assert len(result) <= MAX_HISTORY
    assert set(result) <= {*history, version}  # nothing invented
    assert after_success(result, version) == result  # idempotent


# -- newest and rollback_target ------------------------------------------------------------


def test_newest() -> None:
    assert newest(()) is None
    assert newest([]) is None
    assert newest(("v2", "v1")) == "v2"
    assert newest(("v1",)) == "v1"


@pytest.mark.parametrize(
    ("history", "running", "target"),
    [
        pytest.param((), None, None, id="nothing-known"),
        pytest.param((), "v1", None, id="nothing-known-while-running"),
        pytest.param(("v2", "v1"), None, "v2", id="nothing-runs"),
        pytest.param(("v2", "v1"), "v3", "v2", id="another-version-runs"),
        pytest.param(("v2", "v1"), "v1", "v2", id="the-second-runs"),
        pytest.param(("v2", "v1"), "v2", "v1", id="the-known-good-runs"),
        pytest.param(("v2",), "v2", None, id="the-only-known-good-runs"),
        pytest.param(("v2",), "v1", "v2", id="one-entry-another-runs"),
        pytest.param(("v3", "v2", "v1"), "v3", "v2", id="one-step-back-only"),
    ],
)
def test_rollback_target(history: tuple[str, ...], running: str | None, target: str | None) -> None:
    assert rollback_target(history, running) == target
    assert rollback_target(list(history), running=running) == target

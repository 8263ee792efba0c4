"""The phase decision and the phase groups (release/phases.py), and the per-release health
tally (release/health.py): unit and property tests."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioning.service.releases import health
from provisioning.service.releases.phases import Group, counts, decide, order, shed

# --- groups ---


def test_phases_are_cumulative_counts_of_shares_and_end_with_everyone() -> None:
    assert counts([1, "5%", "25%", "100%"], 500) == [1, 25, 125, 500]
    assert counts([1, "5%", "25%", "100%"], 6) == [1, 2, 6]  # ceil(0.3) = ceil(1.5) = 2
    assert counts([2], 6) == [2, 6]  # a final 100% is added
    assert counts(["100%"], 3) == [3]
    assert counts([10, "100%"], 3) == [3]  # a phase never takes more boards than there are


@pytest.mark.parametrize("bad", [[], [0], ["0%"], ["101%"], ["x"], [5, 2], [-1], [1.5]])
def test_bad_phases_are_refused_by_name(bad: list[int | str]) -> None:
    with pytest.raises(ValueError, match="phase"):
        counts(bad, 100)


@given(st.lists(st.text(alphabet="abcdef0123456789-", min_size=1, max_size=12), max_size=60))
def test_the_order_is_stable_whatever_order_boards_are_named_in(ids: list[str]) -> None:
    assert order(ids) == order(list(reversed(ids))) == order(sorted(ids))
    # A board's phase does not depend on which other boards are in the rollout: the order of
    # any subset is the full order restricted to it.
    half = set(ids[::2])
    assert order(half) == [d for d in order(ids) if d in half]


@given(
    st.lists(st.one_of(st.integers(1, 600), st.integers(1, 100).map(lambda p: f"{p}%")),
             min_size=1, max_size=6),
    st.integers(1, 600),
)  # fmt: skip
def test_counts_grow_and_cover_every_board(phases: list[int | str], n: int) -> None:
    try:
        out = counts(phases, n)
    except ValueError:
        return  # a list that shrinks
    assert out[-1] == n
    assert all(a < b for a, b in itertools.pairwise(out))
    assert all(1 <= c <= n for c in out)


def test_shed_downloads_are_the_services_doing() -> None:
    assert shed("failed 3 times: 503")
    assert shed("failed 3 times: 429")
    assert not shed("failed 3 times: 404")
    assert not shed("bad signature on the manifest")
    assert not shed(None)
    assert not shed("uplink.mpy: 15030 bytes")  # a number that merely contains 503


# --- the decision ---


def test_a_crashing_canary_pauses_a_healthy_one_passes() -> None:
    rest = Group(boards=5, crashed=0, online=5)
    why = decide(Group(1, 1, 1), rest, 0.1, 0.9)
    assert why is not None and "crash rate 1.00" in why and "0.00 on the old release" in why
    assert decide(Group(1, 0, 1), rest, 0.1, 0.9) is None


def test_ties_pass_and_the_thresholds_are_inclusive() -> None:
    rest = Group(10, 2, 8)
    assert decide(Group(10, 2, 8), rest, 0.0, 1.0) is None  # equal is never worse
    assert decide(Group(10, 3, 8), rest, 0.1, 1.0) is None  # exactly +0.1
    assert decide(Group(10, 4, 8), rest, 0.1, 1.0) is not None
    assert decide(Group(10, 2, 4), rest, 0.0, 0.5) is None  # exactly half as many online
    why = decide(Group(10, 2, 3), rest, 0.0, 0.5)
    assert why is not None and "online share 0.30" in why


def test_a_fleet_wide_outage_does_not_stop_a_rollout() -> None:
    # A power cut takes half of every group offline: the release is not to blame.
    assert decide(Group(20, 0, 10), Group(80, 0, 40), 0.0, 0.9) is None
    # Only the phase's boards going quiet is the release's doing.
    assert decide(Group(20, 0, 10), Group(80, 0, 80), 0.0, 0.9) is not None


def test_without_old_boards_the_baseline_is_healthy() -> None:
    nobody = Group(0, 0, 0)
    assert decide(Group(4, 0, 4), nobody, 0.0, 1.0) is None
    assert decide(Group(4, 1, 4), nobody, 0.2, 1.0) is not None


groups = (
    st.integers(0, 200)
    .flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(0, n)))
    .map(lambda t: Group(*t))
)


@given(groups, groups, st.floats(0, 1), st.floats(0, 1))
def test_a_phase_like_the_old_boards_always_passes(
    g: Group, rest: Group, max_crash: float, min_online: float
) -> None:
    assert decide(g, g, max_crash, min_online) is None
    # Fewer crashes and more boards online than the old release never pause.
    better = Group(g.boards, 0, g.boards)
    assert decide(better, g, max_crash, min_online) is None


@given(groups, groups, st.floats(0, 1), st.floats(0, 1), st.integers(0, 50))
def test_more_crashes_or_fewer_online_never_turn_a_pause_into_a_pass(
    g: Group, rest: Group, max_crash: float, min_online: float, more: int
) -> None:
    if decide(g, rest, max_crash, min_online) is None:
        return
    worse_crash = Group(g.boards, min(g.boards, g.crashed + more), g.online)
    worse_online = Group(g.boards, g.crashed, max(0, g.online - more))
    assert decide(worse_crash, rest, max_crash, min_online) is not None
    assert decide(worse_online, rest, max_crash, min_online) is not None


@given(groups, groups, st.floats(0, 1), st.floats(0, 1))
def test_the_decision_follows_the_documented_rule(
    g: Group, rest: Group, max_crash: float, min_online: float
) -> None:
    crash = g.crashed / g.boards if g.boards else 0.0
    crash_rest = rest.crashed / rest.boards if rest.boards else 0.0
    online = g.online / g.boards if g.boards else 1.0
    online_rest = rest.online / rest.boards if rest.boards else 1.0
    ok = crash <= crash_rest + max_crash + 1e-9 and online >= min_online * online_rest - 1e-9
    assert (decide(g, rest, max_crash, min_online) is None) == ok


# --- per-release health ---


def test_crash_free_hours_and_online_share() -> None:
    # 4 steps of an hour from t=0. Board a on 1.0 in steps 0-1, then on 1.1 in steps 2-3,
    # crashing in step 3. Board b on 1.1 from step 0, silent after step 1.
    samples = [("a", 10, "1.0"), ("a", 3610, "1.0"), ("a", 7210, "1.1"),
               ("b", 10, "1.1"), ("b", 3610, "1.1")]  # fmt: skip
    crashes = [("a", 10900, "1.1", 3)]
    t = health.tally(samples, crashes, 0.0, 4, 3600.0)
    assert t["a", "1.0"].up == {0, 1} and t["a", "1.0"].expected == {0, 1}
    assert t["a", "1.1"].up == {2, 3} and t["a", "1.1"].crashed == {3}
    assert t["b", "1.1"].up == {0, 1} and t["b", "1.1"].expected == {0, 1, 2, 3}
    s = health.summary([t["a", "1.1"], t["b", "1.1"]], 3600.0)
    assert s == {
        "boards": 2,
        "board_hours": 4.0,
        "crash_free_hours": 3.0,
        "crash_free_rate": 0.75,
        "online_share": round(4 / 6, 4),
        "crashes": 3,
    }


@given(
    st.lists(st.tuples(st.sampled_from("abc"), st.floats(0, 999), st.sampled_from(["1", "2"]))),
    st.lists(st.tuples(st.sampled_from("abc"), st.floats(0, 999), st.sampled_from(["1", "2"]),
                       st.integers(1, 5))),
)  # fmt: skip
def test_health_tallies_are_consistent(
    samples: list[tuple[str, float, str]], crashes: list[tuple[str, float, str, int]]
) -> None:
    t = health.tally(samples, crashes, 0.0, 10, 100.0)
    for tally in t.values():
        assert tally.crashed <= tally.up <= tally.expected
        assert all(0 <= s < 10 for s in tally.expected)
    s = health.summary(t.values(), 100.0)
    if s["board_hours"]:
        assert 0 <= s["crash_free_rate"] <= 1 and 0 < s["online_share"] <= 1
    assert s["crashes"] == sum(c[3] for c in crashes)

"""The assignors: Java's documented examples, member order, and hypothesis properties
(valid, balanced, sticky, incremental)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykaf._consumer._records import TopicPartition as TP
from pykaf._consumer.group._assignors import (
    CooperativeStickyAssignor,
    MemberSubscription,
    RangeAssignor,
    RebalanceProtocol,
    RoundRobinAssignor,
    assignor_for,
    member_sort_key,
    rebalance_protocol_for,
)
from pykaf._consumer.group._protocol import Subscription

RANGE = RangeAssignor()
ROUND_ROBIN = RoundRobinAssignor()
STICKY = CooperativeStickyAssignor()


def member(
    member_id: str,
    topics: Sequence[str],
    *,
    owned: Sequence[TP] = (),
    generation: int = -1,
    instance: str | None = None,
) -> MemberSubscription:
    return MemberSubscription(
        member_id=member_id,
        group_instance_id=instance,
        subscription=Subscription(
            topics=tuple(topics), owned_partitions=tuple(owned), generation=generation
        ),
    )


def tps(*names: str) -> tuple[TP, ...]:
    out = []
    for name in names:
        topic, partition = name.rsplit("-", 1)
        out.append(TP(topic, int(partition)))
    return tuple(sorted(out))


# -- examples (from the Java assignors' documentation) ----------------------------------


def test_range_example() -> None:
    members = [member("C1", ["t0", "t1"]), member("C0", ["t0", "t1"])]
    got = RANGE.assign({"t0": 3, "t1": 3}, members)
    assert got == {"C0": tps("t0-0", "t0-1", "t1-0", "t1-1"), "C1": tps("t0-2", "t1-2")}


def test_roundrobin_examples() -> None:
    members = [member("C0", ["t0", "t1"]), member("C1", ["t0", "t1"])]
    got = ROUND_ROBIN.assign({"t0": 3, "t1": 3}, members)
    assert got == {"C0": tps("t0-0", "t0-2", "t1-1"), "C1": tps("t0-1", "t1-0", "t1-2")}
    # Unequal subscriptions: C0 t0; C1 t0, t1; C2 t0, t1, t2 (topic i has i+1 partitions).
    members = [member("C0", ["t0"]), member("C1", ["t0", "t1"]), member("C2", ["t0", "t1", "t2"])]
    got = ROUND_ROBIN.assign({"t0": 1, "t1": 2, "t2": 3}, members)
    assert got == {
        "C0": tps("t0-0"),
        "C1": tps("t1-0"),
        "C2": tps("t1-1", "t2-0", "t2-1", "t2-2"),
    }


def test_static_members_sort_first_by_instance_id_as_java() -> None:
    members = [
        member("a-dynamic", ["t"]),
        member("z-member", ["t"], instance="i1"),
        member("b-member", ["t"], instance="i2"),
    ]
    got = RANGE.assign({"t": 3}, members)
    assert got == {"z-member": tps("t-0"), "b-member": tps("t-1"), "a-dynamic": tps("t-2")}


def test_member_order_is_java_utf16_order() -> None:
    # U+FF5E sorts after U+1F600 in UTF-16 (surrogates are 0xD8xx) but before it by code
    # point: Java's order is the UTF-16 one.
    high, astral = member("\uff5e", ["t"]), member("\U0001f600", ["t"])
    assert sorted([high, astral], key=member_sort_key) == [astral, high]


def test_unknown_topics_and_nonsubscribers_get_nothing() -> None:
    members = [member("a", ["t", "missing"]), member("b", [])]
    for assignor in (RANGE, ROUND_ROBIN, STICKY):
        assert assignor.assign({"t": 2, "other": 4}, members) == {"a": tps("t-0", "t-1"), "b": ()}


def test_registry_and_rebalance_protocol() -> None:
    assert assignor_for("range") is not None
    with pytest.raises(ValueError, match="known: 'range', 'roundrobin', 'cooperative-sticky'"):
        assignor_for("sticky")
    assert rebalance_protocol_for(["range", "cooperative-sticky"]) is RebalanceProtocol.EAGER
    assert rebalance_protocol_for(["cooperative-sticky"]) is RebalanceProtocol.COOPERATIVE
    with pytest.raises(ValueError):
        rebalance_protocol_for([])


def test_sticky_generation_decides_conflicting_claims() -> None:
    stale = member("a", ["t"], owned=tps("t-0", "t-1"), generation=3)
    fresh = member("b", ["t"], owned=tps("t-1"), generation=4)
    got = STICKY.assign({"t": 2}, [stale, fresh])
    assert got == {"a": tps("t-0"), "b": tps("t-1")}
    # Generation from the 4-byte user data when the v2 field is absent (Java's format).
    old = MemberSubscription(
        member_id="b",
        group_instance_id=None,
        subscription=Subscription(
            topics=("t",),
            owned_partitions=tps("t-1"),
            user_data=(4).to_bytes(4, "big"),
            version=1,
        ),
    )
    assert STICKY.assign({"t": 2}, [stale, old]) == {"a": tps("t-0"), "b": tps("t-1")}


def test_sticky_moving_partition_is_withheld_for_one_generation() -> None:
    owner = member("a", ["t"], owned=tps("t-0", "t-1", "t-2", "t-3"), generation=1)
    newcomer = member("b", ["t"])
    first = STICKY.assign({"t": 4}, [owner, newcomer])
    assert first == {"a": tps("t-2", "t-3"), "b": ()}  # t-0, t-1 leave a, go to nobody
    owner = member("a", ["t"], owned=first["a"], generation=2)
    second = STICKY.assign({"t": 4}, [owner, newcomer])
    assert second == {"a": tps("t-2", "t-3"), "b": tps("t-0", "t-1")}


# -- properties ---------------------------------------------------------------------------

TOPICS = ["a", "b", "c", "d"]
counts_st = st.dictionaries(st.sampled_from(TOPICS), st.integers(1, 12), min_size=1)
member_ids_st = st.lists(
    st.text("abcdefgh", min_size=1, max_size=4), min_size=1, max_size=8, unique=True
)


def everything(counts: Mapping[str, int], topics: Sequence[str]) -> set[TP]:
    return {TP(t, p) for t in topics if t in counts for p in range(counts[t])}


def check_valid(
    result: Mapping[str, Sequence[TP]],
    members: Sequence[MemberSubscription],
    counts: Mapping[str, int],
) -> Counter[TP]:
    assert set(result) == {m.member_id for m in members}
    seen: Counter[TP] = Counter(tp for parts in result.values() for tp in parts)
    assert all(n == 1 for n in seen.values()), "a partition assigned twice"
    topics_of = {m.member_id: set(m.subscription.topics) for m in members}
    for member_id, parts in result.items():
        assert list(parts) == sorted(parts)
        for tp in parts:
            assert tp.topic in topics_of[member_id]
            assert tp.partition < counts[tp.topic]
    return seen


@st.composite
def groups(draw: st.DrawFn, *, equal: bool) -> tuple[dict[str, int], list[MemberSubscription]]:
    counts = draw(counts_st)
    ids = draw(member_ids_st)
    names = [*sorted(counts), "unknown-topic"]
    if equal:
        topics = draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
        return counts, [member(i, topics) for i in ids]
    return counts, [
        member(i, draw(st.lists(st.sampled_from(names), min_size=0, unique=True))) for i in ids
    ]


@settings(max_examples=150, deadline=None)
@given(groups(equal=False), st.sampled_from(["range", "roundrobin", "cooperative-sticky"]))
def test_every_subscribed_partition_assigned_exactly_once(
    group: tuple[dict[str, int], list[MemberSubscription]], name: str
) -> None:
    counts, members = group
    result = assignor_for(name).assign(counts, members)
    seen = check_valid(result, members, counts)
    subscribed = {t for m in members for t in m.subscription.topics}
    assert set(seen) == everything(counts, sorted(subscribed))
    assert assignor_for(name).assign(counts, list(reversed(members))) == result  # order-free


@settings(max_examples=150, deadline=None)
@given(groups(equal=True), st.sampled_from(["range", "roundrobin", "cooperative-sticky"]))
def test_balanced_within_one_for_equal_subscriptions(
    group: tuple[dict[str, int], list[MemberSubscription]], name: str
) -> None:
    counts, members = group
    result = assignor_for(name).assign(counts, members)
    if name == "range":  # range balances each topic, not the totals
        for topic in counts:
            sizes = [sum(1 for tp in parts if tp.topic == topic) for parts in result.values()]
            if topic in members[0].subscription.topics:
                assert max(sizes) - min(sizes) <= 1
    else:
        sizes = [len(parts) for parts in result.values()]
        assert max(sizes) - min(sizes) <= 1


def rounds(
    counts: Mapping[str, int], members: Sequence[MemberSubscription], generation: int
) -> tuple[dict[str, tuple[TP, ...]], int]:
    """Run the cooperative protocol until a round withholds nothing (at most 3 rounds):
    each member's next subscription owns what it was given."""
    for round_ in range(3):
        result = STICKY.assign(counts, members)
        check_valid(result, members, counts)
        subscribed = {t for m in members for t in m.subscription.topics}
        if {tp for parts in result.values() for tp in parts} == everything(
            counts, sorted(subscribed)
        ):
            return result, round_ + 1
        generation += 1
        members = [
            member(
                m.member_id, m.subscription.topics, owned=result[m.member_id], generation=generation
            )
            for m in members
        ]
    raise AssertionError("the cooperative rounds did not converge")


@settings(max_examples=100, deadline=None)
@given(groups(equal=True), st.data())
def test_cooperative_sticky_converges_and_a_leaver_moves_only_its_partitions(
    group: tuple[dict[str, int], list[MemberSubscription]], data: st.DataObject
) -> None:
    counts, members = group
    # Start from an arbitrary (valid) ownership: some partitions owned, some not.
    topics = members[0].subscription.topics
    pool = sorted(everything(counts, topics))
    owners = data.draw(
        st.lists(
            st.sampled_from([None, *range(len(members))]), min_size=len(pool), max_size=len(pool)
        )
    )
    owned: dict[str, list[TP]] = {m.member_id: [] for m in members}
    for tp, owner in zip(pool, owners, strict=True):
        if owner is not None:
            owned[members[owner].member_id].append(tp)
    start = [member(m.member_id, topics, owned=owned[m.member_id], generation=1) for m in members]
    result, taken = rounds(counts, start, 1)
    assert taken <= 2  # one rebalance, plus the follow-up for what moved
    sizes = [len(parts) for parts in result.values()]
    assert max(sizes) - min(sizes) <= 1

    # A stable, balanced group: one member leaves.
    if len(members) < 2:
        return
    leaver = data.draw(st.sampled_from([m.member_id for m in members]))
    stayers = [
        member(m.member_id, topics, owned=result[m.member_id], generation=5)
        for m in members
        if m.member_id != leaver
    ]
    after = STICKY.assign(counts, stayers)
    check_valid(after, stayers, counts)
    for m in stayers:
        assert set(result[m.member_id]) <= set(after[m.member_id]), "a stayer lost a partition"
    moved = {tp for m in stayers for tp in set(after[m.member_id]) - set(result[m.member_id])}
    assert moved == set(result[leaver])  # exactly the leaver's partitions, in one round
    sizes = [len(parts) for parts in after.values()]
    assert max(sizes) - min(sizes) <= 1


@settings(max_examples=100, deadline=None)
@given(groups(equal=True))
def test_cooperative_sticky_joiner_takes_only_from_revocations(
    group: tuple[dict[str, int], list[MemberSubscription]],
) -> None:
    counts, members = group
    topics = members[0].subscription.topics
    result, _ = rounds(counts, [member(m.member_id, topics) for m in members], 0)
    stable = [member(m.member_id, topics, owned=result[m.member_id], generation=3) for m in members]
    joined = [*stable, member("zz-new", topics)]
    first = STICKY.assign(counts, joined)
    check_valid(first, joined, counts)
    for m in stable:  # old members only lose partitions in the first round
        assert set(first[m.member_id]) <= set(result[m.member_id])
    assert first["zz-new"] == ()  # only what nobody owned could go to it, and all was owned
    final, taken = rounds(
        counts,
        [member(m.member_id, topics, owned=first[m.member_id], generation=4) for m in joined],
        4,
    )
    assert taken == 1
    sizes = [len(parts) for parts in final.values()]
    assert max(sizes) - min(sizes) <= 1

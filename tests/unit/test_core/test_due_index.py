"""The due index pops exactly the keys whose current due time has come."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from core.due_index import DueIndex


def pop_all(index: DueIndex, now: float, current) -> list[bytes]:
    """Every key ``pop_next`` hands out at ``now``, in order, each once."""
    popped: list[bytes] = []
    while (due := index.pop_next(now, current)) is not None:
        if due[0] not in popped:
            popped.append(due[0])
    return popped


def test_pops_only_due_keys_whose_table_entry_is_unchanged():
    table = {b"a": 10.0, b"b": 20.0, b"c": 5.0}
    index = DueIndex()
    index.rebuild(table.items())
    table[b"c"] = 30.0  # moved later by the profile stage
    index.push(b"c", 30.0)
    assert pop_all(index, 15.0, table.get) == [b"a"]  # c's old 5.0 is stale, b not due yet
    assert pop_all(index, 25.0, table.get) == [b"b"]
    del table[b"c"]  # deleted: never due
    assert pop_all(index, 100.0, table.get) == []
    assert len(index) == 0


def test_compaction_is_asked_for_when_stale_entries_pile_up():
    index = DueIndex(compact_factor=2, min_compact_size=4)
    index.rebuild([(b"a", 1.0), (b"b", 2.0)])
    for i in range(3):
        index.push(b"a", 10.0 + i)
    assert index.needs_compaction()


@given(
    st.lists(st.tuples(st.sampled_from([b"k1", b"k2", b"k3", b"k4"]), st.floats(0, 100)), max_size=60),
    st.floats(0, 100),
)
def test_every_due_key_is_popped_once_and_no_other(writes, now):
    table: dict[bytes, float] = {}
    index = DueIndex()
    for key, due_at in writes:
        table[key] = due_at
        index.push(key, due_at)
    popped = pop_all(index, now, table.get)
    assert sorted(popped) == sorted(key for key, due_at in table.items() if due_at <= now)
    assert [table[key] for key in popped] == sorted(table[key] for key in popped)  # in time order


def test_a_due_time_written_during_the_pass_is_popped_in_the_same_pass():
    table = {b"a": 10.0, b"b": 30.0}
    index = DueIndex()
    index.rebuild(table.items())
    assert index.pop_next(50.0, table.get) == (b"a", 10.0)
    table[b"a"] = 20.0  # applying a's wake-up deferred it to a time already past
    index.push(b"a", 20.0)
    assert index.pop_next(50.0, table.get) == (b"a", 20.0)
    assert index.pop_next(50.0, table.get) == (b"b", 30.0)
    assert index.pop_next(50.0, table.get) is None


@given(st.lists(st.floats(allow_nan=False) | st.sampled_from([0.0, -0.0, 1.5]), min_size=1, max_size=40))
def test_an_entry_keeps_its_time_exactly_and_sorts_as_the_time_does(times):
    """The heap's packed entries: every float comes back bit for bit, and the order is the numbers' order
    (negative, zero, fractions and infinities included), the key breaking ties."""
    table = {f"k{i:02d}".encode(): due_at + 0.0 for i, due_at in enumerate(times)}  # -0.0 is kept as 0.0
    index = DueIndex()
    index.rebuild(table.items())
    assert index.earliest() == min(times)
    popped = []
    while (due := index.pop_next(float("inf"), table.get)) is not None:
        popped.append(due)
    assert popped == sorted(((key, due_at) for key, due_at in table.items()), key=lambda item: (item[1], item[0]))
    assert all(due_at == table[key] and str(due_at) == str(table[key]) for key, due_at in popped)


KEYS = st.sampled_from([b"k1", b"k2", b"k3"])
TIMES = st.floats(0, 100)


@settings(max_examples=400)
@given(
    st.lists(
        st.tuples(st.just("write"), KEYS, st.none() | TIMES)
        | st.tuples(st.just("pass"), st.floats(0, 30), st.lists(st.none() | st.floats(0, 50), max_size=6)),
        max_size=50,
    )
)
def test_due_times_indexed_by_write_are_each_handed_out_once_at_their_time(steps):
    """Writes at the clock (the stream time, never behind a pass) move keys' due times anywhere, earlier or
    later, or delete them; each pass at a later clock hands out every key whose due time has come, at that
    time, in time order, and none other, also the due times its own wake-ups write (at the woken time, a delay
    after it or none). A time is woken once: a pass skips what it handed out already, as ``due_commands`` does."""
    table: dict[bytes, float] = {}
    waiting: set[tuple[bytes, float]] = set()  # written and not handed out yet
    index = DueIndex()
    clock = 0.0

    def write(key: bytes, due_at: float | None, now: float) -> None:
        previous = table.get(key)
        if due_at == previous:
            return  # as the profile stage: an unchanged due time is not written
        waiting.discard((key, previous))
        if due_at is None:
            del table[key]
        else:
            table[key] = due_at
            waiting.add((key, due_at))
            index.write(key, previous, due_at, now)

    for step in steps:
        if step[0] == "write":
            write(step[1], step[2], clock)
            continue
        clock += step[1]
        rewrites = list(step[2])
        handed: list[tuple[bytes, float]] = []
        while (due := index.pop_next(clock, table.get)) is not None:
            if due in handed:
                continue
            key, due_at = due
            assert due in waiting and due_at <= clock
            assert not handed or handed[-1][1] <= due_at  # time order
            handed.append(due)
            waiting.discard(due)
            if rewrites:  # the woken key's step writes its next due time, at the time it was woken at
                delay = rewrites.pop(0)
                write(key, None if delay is None else due_at + delay, due_at)
        assert not [due for due in waiting if due[1] <= clock]


def test_a_due_time_moved_later_takes_no_entry_until_the_earlier_one_pops():
    table = {b"a": 10.0}
    index = DueIndex()
    index.rebuild(table.items())
    index.write(b"a", 10.0, 40.0, 5.0)  # an event at 5 moves a's wake-up from 10 to 40
    table[b"a"] = 40.0
    assert len(index) == 1
    assert index.pop_next(20.0, table.get) is None  # 10's entry, popped, stands for 40 again
    assert len(index) == 1
    assert index.pop_next(45.0, table.get) == (b"a", 40.0)

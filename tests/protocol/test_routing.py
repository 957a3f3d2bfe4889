"""Tests of ensemble_agg.protocol.routing.Router: swergio's routing rules, no sockets."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ensemble_agg.protocol.routing import MAX_ROOM_NAME, RESERVED_ROOMS, Router


def _router(**kwargs) -> Router:
    ids = iter(f"log-{i}" for i in range(1000))
    return Router("utf-8", 10, new_id=lambda: next(ids), **kwargs)


def _join(r: Router, conn: int, name, *rooms) -> None:
    r.connect(conn)
    assert r.route(conn, {"TYPE": "COMMAND/REGISTER", "NAME": name}).problem is None
    for room in ("_command", *rooms):
        routing = r.route(conn, {"TYPE": "COMMAND/JOINROOM", "ROOM": room})
        assert routing.problem is None


def _decode(frame: bytes) -> dict:
    assert int(frame[:10]) == len(frame) - 10
    return json.loads(frame[10:])


def _received(routing) -> dict[int, list[dict]]:
    """Recipient id -> the messages it gets, in order."""
    out: dict[int, list[dict]] = {}
    for targets, frame in routing.deliveries:
        for t in targets:
            out.setdefault(t, []).append(_decode(frame))
    return out


def _msg(**fields) -> dict:
    return {"ID": "x", "TYPE": "DATA/CUSTOM", **fields}


@pytest.fixture
def abc() -> Router:
    r = _router()
    _join(r, 1, "a", "room")
    _join(r, 2, "b", "room")
    _join(r, 3, "c")
    return r


def test_room_message_goes_to_the_other_members_not_the_sender(abc):
    got = _received(abc.route(1, _msg(TO_ROOM="room", X=1)))
    assert list(got) == [2]
    assert got[2] == [{"ID": "x", "TYPE": "DATA/CUSTOM", "TO_ROOM": "room", "X": 1,
                       "SENT_BY": "a"}]  # fmt: skip


def test_commands_reach_everyone_in_command_room(abc):
    abc.connect(4)
    got = _received(abc.route(4, {"TYPE": "COMMAND/REGISTER", "NAME": "d",
                                  "TO_ROOM": "_command"}))  # fmt: skip
    assert sorted(got) == [1, 2, 3]
    assert got[3][0]["SENT_BY"] == "d"


def test_direct_message_by_name_includes_the_sender_itself(abc):
    assert list(_received(abc.route(1, _msg(TO="c")))) == [3]
    assert list(_received(abc.route(1, _msg(TO="a")))) == [1]
    assert _received(abc.route(1, _msg(TO="nobody"))) == {}


def test_direct_message_reaches_every_client_with_that_name(abc):
    _join(abc, 4, "c")
    assert sorted(_received(abc.route(1, _msg(TO="c")))) == [3, 4]


def test_to_room_and_to_both_apply_and_may_deliver_twice(abc):
    got = _received(abc.route(1, _msg(TO_ROOM="room", TO="b")))
    assert list(got) == [2] and len(got[2]) == 2
    got = _received(abc.route(1, _msg(TO_ROOM="room", TO="c")))
    assert sorted(got) == [2, 3]


def test_no_address_goes_nowhere(abc):
    routing = abc.route(1, _msg(X=1))
    assert routing.deliveries == [] and routing.problem is None


def test_sent_by_is_added_only_when_absent(abc):
    got = _received(abc.route(1, _msg(TO_ROOM="room", SENT_BY="mallory")))
    assert got[2][0]["SENT_BY"] == "mallory"


def test_overwrite_sent_by_uses_the_registered_name():
    r = _router(overwrite_sent_by=True)
    _join(r, 1, "a", "room")
    _join(r, 2, "b", "room")
    got = _received(r.route(1, _msg(TO_ROOM="room", SENT_BY="b")))
    assert got[2][0]["SENT_BY"] == "a"


def test_forward_and_gradient_are_copied_to_the_logging_room():
    r = _router()
    _join(r, 1, "a", "room")
    _join(r, 2, "b", "room", "_logging")
    for kind in ("DATA/FORWARD", "DATA/GRADIENT"):
        message = {"ID": "m", "TYPE": kind, "TO_ROOM": "room", "DATA": [1]}
        got = _received(r.route(1, message))
        assert len(got[2]) == 2
        assert got[2][1]["TYPE"] == "LOG/MESSAGES"
        assert got[2][1]["TO_ROOM"] == "_logging"
        assert got[2][1]["MESSAGE"] == {**message, "SENT_BY": "a"}
    # the sender is in _logging too: it gets the copy (not the message)
    _join(r, 3, "c", "_logging")
    got = _received(r.route(3, {"ID": "m", "TYPE": "DATA/FORWARD", "TO": "a"}))
    assert [m["TYPE"] for m in got[3]] == ["LOG/MESSAGES"]
    assert [m["TYPE"] for m in got[1]] == ["DATA/FORWARD"]
    assert len(got[2]) == 1
    # other types are not copied, and without enable_logging nothing is
    assert 2 not in _received(r.route(1, _msg(TO="c")))
    quiet = _router(enable_logging=False)
    _join(quiet, 1, "a")
    _join(quiet, 2, "b", "_logging")
    assert _received(quiet.route(1, {"TYPE": "DATA/FORWARD", "TO": "a"})).keys() == {1}


def test_leaveroom_removes_and_deletes_an_emptied_room(abc):
    abc.route(1, {"TYPE": "COMMAND/LEAVEROOM", "ROOM": "room"})
    assert abc.members("room") == [2]
    assert list(_received(abc.route(3, _msg(TO_ROOM="room")))) == [2]
    abc.route(2, {"TYPE": "COMMAND/LEAVEROOM", "ROOM": "room"})
    assert abc.route(3, _msg(TO_ROOM="room")).problem == "unknown TO_ROOM 'room'"
    # leaving a room one is not in changes nothing and is still broadcast
    abc.route(1, {"TYPE": "COMMAND/JOINROOM", "ROOM": "r2"})
    routing = abc.route(
        3, {"TYPE": "COMMAND/LEAVEROOM", "ROOM": "r2", "TO_ROOM": "_command"}
    )
    assert routing.problem is None and sorted(_received(routing)) == [1, 2]
    assert abc.members("r2") == [1]


def test_reserved_rooms_are_never_deleted():
    r = _router()
    _join(r, 1, "a", "_logging")
    for room in RESERVED_ROOMS:
        r.route(1, {"TYPE": "COMMAND/LEAVEROOM", "ROOM": room})
        assert r.members(room) == []
    r.connect(2)
    routing = r.route(
        2, {"TYPE": "COMMAND/REGISTER", "NAME": "b", "TO_ROOM": "_command"}
    )
    assert routing.problem is None


def test_disconnect_leaves_rooms_but_rooms_stay(abc):
    abc.disconnect(2)
    assert abc.members("room") == [1]
    abc.disconnect(1)
    routing = abc.route(3, _msg(TO_ROOM="room"))
    assert routing.problem is None and routing.deliveries == []
    assert abc.route(3, _msg(TO="b")).deliveries == []
    abc.disconnect(1)  # idempotent
    assert abc.connections == 1


def test_disconnect_command_closes_and_goes_nowhere(abc):
    routing = abc.route(1, {"TYPE": "COMMAND/DISCONNECT", "TO_ROOM": "_command"})
    assert routing.close and routing.deliveries == []


def test_register_renames(abc):
    abc.route(1, {"TYPE": "COMMAND/REGISTER", "NAME": "z"})
    assert abc.name_of(1) == "z"
    assert list(_received(abc.route(2, _msg(TO="z")))) == [1]


def test_unknown_type_values_are_routed_like_any_message(abc):
    got = _received(abc.route(1, {"TYPE": ["odd"], "TO_ROOM": "room"}))
    assert got[2][0]["TYPE"] == ["odd"]


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ({"TO_ROOM": "room"}, "no TYPE"),
        (_msg(TO_ROOM="nowhere"), "unknown TO_ROOM 'nowhere'"),
        (_msg(TO_ROOM=["room"]), "unknown TO_ROOM ['room']"),
        (_msg(TO_ROOM={"a": 1}), "unknown TO_ROOM {'a': 1}"),
        ({"TYPE": "COMMAND/REGISTER"}, "REGISTER without NAME"),
        ({"TYPE": "COMMAND/JOINROOM"}, "COMMAND/JOINROOM without ROOM"),
        ({"TYPE": "COMMAND/JOINROOM", "ROOM": [1]}, "ROOM [1]; expected a string"),
        ({"TYPE": "COMMAND/LEAVEROOM", "ROOM": "never"}, "LEAVEROOM of unknown room"),
        (
            {"TYPE": "COMMAND/JOINROOM", "ROOM": "x" * (MAX_ROOM_NAME + 1)},
            f"{MAX_ROOM_NAME + 1}-character room name",
        ),
    ],
)
def test_bad_messages_are_dropped_with_a_reason(abc, message, problem):
    routing = abc.route(1, message)
    assert problem in routing.problem
    assert routing.deliveries == [] and not routing.close
    # the sender is untouched
    assert list(_received(abc.route(1, _msg(TO_ROOM="room")))) == [2]


def test_state_change_happens_even_when_the_message_is_undeliverable(abc):
    routing = abc.route(
        3, {"TYPE": "COMMAND/JOINROOM", "ROOM": "new", "TO_ROOM": "zzz"}
    )
    assert routing.problem == "unknown TO_ROOM 'zzz'"
    assert abc.members("new") == [3]


def test_nothing_but_register_or_disconnect_before_register():
    r = _router()
    _join(r, 1, "a", "room")
    r.connect(2)
    for message in (
        {"TYPE": "COMMAND/JOINROOM", "ROOM": "room"},
        _msg(TO_ROOM="room"),
        {"TYPE": "COMMAND/LEAVEROOM", "ROOM": "room"},
    ):
        routing = r.route(2, message)
        assert "before REGISTER" in routing.problem and routing.deliveries == []
    assert r.members("room") == [1]
    assert r.route(2, {"TYPE": "COMMAND/DISCONNECT"}).close


def test_room_count_is_capped_and_empty_rooms_are_freed():
    r = _router(max_rooms=4)  # two reserved + two
    _join(r, 1, "a", "r1")
    r.route(1, {"TYPE": "COMMAND/JOINROOM", "ROOM": "r2"})
    routing = r.route(1, {"TYPE": "COMMAND/JOINROOM", "ROOM": "r3"})
    assert "4 rooms exist" in routing.problem
    r.disconnect(1)  # r1 and r2 are now empty: freed for the next room
    _join(r, 2, "b", "r3")
    assert r.members("r3") == [2] and r.room_count == 3


def test_room_names_compare_like_dict_keys(abc):
    abc.route(3, {"TYPE": "COMMAND/JOINROOM", "ROOM": 1})
    assert list(_received(abc.route(1, _msg(TO_ROOM=1.0)))) == [3]


def test_unencodable_message_is_dropped():
    r = Router("utf-8", 2)  # a 2-byte header cannot announce a 100-byte body
    _join(r, 1, "a", "room")
    _join(r, 2, "b", "room")
    routing = r.route(1, _msg(TO_ROOM="room", PAD="x" * 100))
    assert "cannot be encoded" in routing.problem and routing.deliveries == []


def test_misuse_raises():
    r = _router()
    with pytest.raises(ValueError, match="not connected"):
        r.route(7, _msg())
    r.connect(7)
    with pytest.raises(ValueError, match="already connected"):
        r.connect(7)


# -- bounded identities ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["x" * 257, ["x" * 200, "y" * 60]])
def test_a_long_name_is_refused_and_the_connection_stays_unregistered(name):
    r = _router()
    _join(r, 1, "a", "room")
    r.connect(2)
    routing = r.route(2, {"TYPE": "COMMAND/REGISTER", "NAME": name, "TO_ROOM": "room"})
    assert routing.refused and routing.deliveries == []
    assert "NAME; the limit is 256" in routing.problem
    assert not r.registered(2)
    # a name at the limit is fine, and a later long one keeps it
    assert r.route(2, {"TYPE": "COMMAND/REGISTER", "NAME": "n" * 256}).problem is None
    assert r.route(2, {"TYPE": "COMMAND/REGISTER", "NAME": name}).refused
    assert r.name_of(2) == "n" * 256


def test_rooms_per_connection_are_capped_and_rejoining_is_free():
    r = _router(max_rooms_per_conn=3)
    _join(r, 1, "a", "r1", "r2")  # _command, r1, r2
    routing = r.route(1, {"TYPE": "COMMAND/JOINROOM", "ROOM": "r3"})
    assert routing.refused and "already in 3 rooms" in routing.problem
    assert r.members("r3") == [] and r.room_count == 4
    assert r.route(1, {"TYPE": "COMMAND/JOINROOM", "ROOM": "r1"}).problem is None
    r.route(1, {"TYPE": "COMMAND/LEAVEROOM", "ROOM": "r2"})
    assert r.route(1, {"TYPE": "COMMAND/JOINROOM", "ROOM": "r3"}).problem is None


def test_room_name_limit_is_a_parameter():
    r = _router(max_room_chars=4)
    _join(r, 1, "a")
    assert r.route(1, {"TYPE": "COMMAND/JOINROOM", "ROOM": "abcd"}).problem is None
    routing = r.route(1, {"TYPE": "COMMAND/JOINROOM", "ROOM": "abcde"})
    assert routing.refused and "5-character room name" in routing.problem


@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                ["COMMAND/REGISTER", "COMMAND/JOINROOM", "COMMAND/LEAVEROOM"]
            ),
            st.integers(1, 3),
            st.text("ab", max_size=12),
        ),
        max_size=60,
    )
)
def test_identities_stay_bounded_whatever_is_sent(commands):
    r = _router(max_name_chars=6, max_room_chars=5, max_rooms_per_conn=4)
    for conn in (1, 2, 3):
        r.connect(conn)
    for kind, conn, value in commands:
        r.route(conn, {"TYPE": kind, "NAME": value, "ROOM": value})
        for c in (1, 2, 3):
            name = r.name_of(c)
            assert name is None or len(name) <= 6
            rooms = [room for room in r._rooms if c in r.members(room)]
            assert len(rooms) <= 4
            assert all(len(room) <= 5 for room in rooms if room not in RESERVED_ROOMS)


# -- large bodies, routed from their outline ----------------------------------------------

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=40,
)
_messages = st.fixed_dictionaries(
    {"TYPE": st.sampled_from(["DATA/CUSTOM", "DATA/FORWARD", "COMMAND/JOINROOM"])},
    optional={
        "ID": st.text(max_size=4),
        "TO_ROOM": st.sampled_from(["room", "_logging", "nowhere", 5]),
        "TO": st.sampled_from(["a", "b", "c", ["b"]]),
        "SENT_BY": st.text(max_size=4) | st.integers(),
        "ROOM": st.sampled_from(["room", "new", ["x"]]),
        "NAME": st.text(max_size=3),
        "X": _json_values,
        "Y": _json_values,
    },
)


@given(_messages, st.booleans())
def test_outline_routing_sends_the_same_bytes_as_decoding(message, overwrite):
    from ensemble_agg.protocol.framing import outline_at_once

    routers = []
    for _ in range(2):
        r = _router(overwrite_sent_by=overwrite)
        _join(r, 1, "a", "room", "_logging")
        _join(r, 2, "b", "room", "_logging")
        _join(r, 3, "c")
        routers.append(r)
    body = json.dumps(message).encode()
    expected = routers[0].route(1, json.loads(body))
    got = routers[1].route_outline(1, outline_at_once(body, "utf-8"))
    assert got == expected
    assert routers[0].members("new") == routers[1].members("new")


@given(_json_values, st.integers(0, 10**6), st.sampled_from(list(' []{},":ab1\\')))
def test_outline_refuses_exactly_what_json_loads_refuses(value, where, char):
    from ensemble_agg.protocol.framing import outline_at_once

    text = json.dumps({"TYPE": "T", "V": value, "W": [value, [value]]})
    at = where % (len(text) + 1)
    for mutated in (text, text[:at] + text[at + 1 :], text[:at] + char + text[at:]):
        try:
            decoded = json.loads(mutated)
        except (ValueError, RecursionError):
            decoded = None
        try:
            outline = outline_at_once(mutated.encode(), "utf-8")
        except ValueError:
            assert type(decoded) is not dict, mutated
            continue
        assert type(decoded) is dict, mutated
        wanted = {k: v for k, v in decoded.items() if k in ("TYPE", "SENT_BY")}
        assert outline.fields == wanted
        assert json.loads(outline.text[: outline.end]) == decoded


def test_outline_of_a_large_list_is_checked_in_small_steps():
    from ensemble_agg.protocol.framing import outline_body

    body = json.dumps({"TYPE": "T", "X": ["ab"] * 200_000, "Y": [[1.5] * 9] * 9000})
    steps = sum(1 for _ in outline_body(body.encode(), "utf-8"))
    assert steps > 40  # many yields: a server serves others in between
    broken = body.replace('"ab", "ab"]', '"ab", "ab"')
    with pytest.raises(ValueError, match="not valid JSON"):
        for _ in outline_body(broken.encode(), "utf-8"):
            pass


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "latin-1"])
def test_outline_routing_of_a_body_with_multibyte_characters(encoding):
    from ensemble_agg.protocol.framing import outline_at_once

    routers = [Router(encoding, 10, new_id=lambda: "log") for _ in range(2)]
    for r in routers:
        _join(r, 1, "é", "room", "_logging")
        _join(r, 2, "b", "room", "_logging")
    message = {"TYPE": "DATA/FORWARD", "TO_ROOM": "room", "SENT_BY": "ü", "X": "ÿé"}
    body = json.dumps(message, ensure_ascii=False).encode(encoding)
    routers[1].overwrite_sent_by = routers[0].overwrite_sent_by = True
    expected = routers[0].route(1, json.loads(body.decode(encoding)))
    got = routers[1].route_outline(1, outline_at_once(body, encoding))
    for (targets, a), (targets2, b) in zip(
        expected.deliveries, got.deliveries, strict=True
    ):
        assert targets == targets2
        assert int(a[:10]) == len(a) - 10 and int(b[:10]) == len(b) - 10
        assert json.loads(a[10:].decode(encoding)) == json.loads(
            b[10:].decode(encoding)
        )


def test_stamping_a_non_ascii_body_with_many_sent_by_keys_costs_one_pass():
    # Byte offsets were found by encoding the text up to each SENT_BY key:
    # 20,000 keys in a 260 KB body took some 15 s (issue 17 review, item 1).
    import time

    from ensemble_agg.protocol.framing import outline_at_once

    body = (
        '{"TYPE": "DATA/CUSTOM", "TO": "x", "Z": "\u00e9", '
        + '"SENT_BY": 0, ' * 20_000
        + '"Y": 1}'
    ).encode()
    r = _router()
    _join(r, 1, "x")
    outline = outline_at_once(body, "utf-8")
    for sent_by in ("x", None):
        r.overwrite_sent_by = sent_by is not None
        t0 = time.perf_counter()
        routing = r.route_outline(1, outline)
        assert time.perf_counter() - t0 < 3.0  # one pass: some 10 ms
        [(targets, frame)] = routing.deliveries
        assert targets == [1]
        assert _decode(frame) == {**json.loads(body), "SENT_BY": sent_by or 0}


_names = st.one_of(
    st.sampled_from(["a", "b", 1, 1.0, True, 0, None, "1"]),
    st.lists(st.sampled_from([0.5, 1.5, "a", 1, True]), max_size=3),
    st.dictionaries(st.sampled_from(["k", "l"]), st.sampled_from([1, 1.0, "a"])),
)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["register", "disconnect", "to"]), st.integers(1, 5), _names
        ),
        max_size=40,
    )
)
def test_to_reaches_exactly_the_connections_whose_name_equals_it(steps):
    # TO is looked up in an index by name; swergio compares every name with
    # ==.  The index must give the same connections (1 == 1.0 == True,
    # lists and objects by value) whatever the renames and departures.
    r = _router(enable_logging=False)
    names: dict[int, object] = {}
    connected: set[int] = set()
    for action, conn, value in steps:
        if conn not in connected:
            r.connect(conn)
            connected.add(conn)
        if action == "register":
            assert (
                r.route(conn, {"TYPE": "COMMAND/REGISTER", "NAME": value}).problem
                is None
            )
            names[conn] = value
        elif action == "disconnect":
            r.disconnect(conn)
            connected.discard(conn)
            names.pop(conn, None)
        elif conn in names:
            routing = r.route(conn, {"TYPE": "T", "TO": value, "SENT_BY": "s"})
            got = sorted(t for targets, _ in routing.deliveries for t in targets)
            assert got == sorted(c for c, n in names.items() if n == value)


def test_outline_steps_cover_kilobytes_however_deep_the_nesting():
    # Each step resumes the chain of generators down to the nesting being
    # read: with a step per key, 450 levels cost 5 us per byte (issue 17
    # review, item 4).  Steps now cover at least 4 KiB each.
    from ensemble_agg.protocol.framing import outline_body

    inner = "{" + ", ".join(f'"k{i}": 0' for i in range(8000)) + "}"
    body = ('{"TYPE": "T", "TO": "x", "Y": ' + '{"a": ' * 450 + inner
            + "}" * 450 + "}").encode()  # fmt: skip
    steps = outline_body(body, "utf-8")
    count = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            assert done.value.fields == {"TYPE": "T", "TO": "x"}
            break
        count += 1
    assert count <= len(body) // 4096 + 2

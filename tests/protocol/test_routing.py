"""Tests of ensemble_agg.protocol.routing.Router: swergio's routing rules, no sockets."""

from __future__ import annotations

import json

import pytest

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
            "1025-character room name",
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

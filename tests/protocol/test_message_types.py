"""The message-type table against the installed swergio's ``MESSAGE_TYPE``."""

from __future__ import annotations

import inspect

import swergio
from swergio.messageType import MessageMainType, MessageTypeSetting

from ensemble_agg.protocol import message_types


def _swergio_ids() -> set[str]:
    """Every ``TYPE`` id swergio defines, read from its classes as ``by_id`` does."""
    ids = set()
    for main in vars(swergio.MESSAGE_TYPE).values():
        if inspect.isclass(main) and issubclass(main, MessageMainType):
            ids |= {
                v.id for v in vars(main).values() if isinstance(v, MessageTypeSetting)
            }
    return ids


def test_the_table_is_swergios_id_for_id():
    ids = _swergio_ids()
    assert len(ids) >= 20  # the reading above found swergio's table
    assert message_types.MESSAGE_TYPES == ids
    for type_id in ids:
        assert swergio.MESSAGE_TYPE.by_id(type_id).id == type_id


def test_every_id_has_its_constant_and_every_constant_is_an_id():
    ids = _swergio_ids()
    for type_id in ids:
        assert getattr(message_types, type_id.replace("/", "_")) == type_id
    constants = {
        name: value
        for name, value in vars(message_types).items()
        if name.isupper() and isinstance(value, str)
    }
    assert set(constants.values()) == ids
    assert all(name == value.replace("/", "_") for name, value in constants.items())


def test_logged_types_are_what_swergios_server_copies_to_logging():
    mt = swergio.MESSAGE_TYPE
    assert message_types.LOGGED_TYPES == (mt.DATA.FORWARD.id, mt.DATA.GRADIENT.id)
    assert message_types.LOG_MESSAGES == mt.LOG.MESSAGE.id

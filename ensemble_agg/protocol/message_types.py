"""swergio 0.0.2's message types: the one copy of its ``TYPE`` strings.

swergio names its types in ``swergio/messageType.py`` (``MESSAGE_TYPE.DATA.CUSTOM.id
== "DATA/CUSTOM"``, ...).  The protocol layer does not import swergio, so the ids
are written out here once, each as a constant named after its id (``/`` becomes
``_``), and every module that reads or writes a ``TYPE`` uses these.
``tests/protocol/test_message_types.py`` holds this table equal to the installed
swergio's, id for id, both ways.

Note swergio's one irregular name: ``MESSAGE_TYPE.LOG.MESSAGE`` has the id
``"LOG/MESSAGES"`` (with an S), which is what is on the wire and so what is here.

Examples
--------
>>> DATA_CUSTOM
'DATA/CUSTOM'
>>> "LOG/MESSAGES" in MESSAGE_TYPES, "LOG/MESSAGE" in MESSAGE_TYPES
(True, False)
"""

from __future__ import annotations

__all__ = [
    "COMMAND_CUSTOM",
    "COMMAND_DISABLELOGGING",
    "COMMAND_DISCONNECT",
    "COMMAND_ENABLELOGGING",
    "COMMAND_JOINROOM",
    "COMMAND_LEAVEROOM",
    "COMMAND_LOADMODELWEIGHTS",
    "COMMAND_LOADSETTINGS",
    "COMMAND_REGISTER",
    "COMMAND_SAVEMODELWEIGHTS",
    "COMMAND_SAVESETTINGS",
    "DATA_CUSTOM",
    "DATA_FORWARD",
    "DATA_GRADIENT",
    "DATA_REWARD",
    "DATA_TEXT",
    "LOGGED_TYPES",
    "LOG_CUSTOM",
    "LOG_KPI",
    "LOG_MESSAGES",
    "LOG_MODELWEIGHTS",
    "LOG_RUN",
    "LOG_SETTINGS",
    "MESSAGE_TYPES",
]

# swergio.MESSAGE_TYPE.DATA
DATA_FORWARD = "DATA/FORWARD"
DATA_GRADIENT = "DATA/GRADIENT"
DATA_REWARD = "DATA/REWARD"
DATA_TEXT = "DATA/TEXT"
DATA_CUSTOM = "DATA/CUSTOM"

# swergio.MESSAGE_TYPE.COMMAND
COMMAND_REGISTER = "COMMAND/REGISTER"
COMMAND_DISCONNECT = "COMMAND/DISCONNECT"
COMMAND_JOINROOM = "COMMAND/JOINROOM"
COMMAND_LEAVEROOM = "COMMAND/LEAVEROOM"
COMMAND_ENABLELOGGING = "COMMAND/ENABLELOGGING"
COMMAND_DISABLELOGGING = "COMMAND/DISABLELOGGING"
COMMAND_SAVEMODELWEIGHTS = "COMMAND/SAVEMODELWEIGHTS"
COMMAND_LOADMODELWEIGHTS = "COMMAND/LOADMODELWEIGHTS"
COMMAND_SAVESETTINGS = "COMMAND/SAVESETTINGS"
COMMAND_LOADSETTINGS = "COMMAND/LOADSETTINGS"
COMMAND_CUSTOM = "COMMAND/CUSTOM"

# swergio.MESSAGE_TYPE.LOG (swergio's attribute is LOG.MESSAGE; its id has an S)
LOG_MODELWEIGHTS = "LOG/MODELWEIGHTS"
LOG_SETTINGS = "LOG/SETTINGS"
LOG_MESSAGES = "LOG/MESSAGES"
LOG_KPI = "LOG/KPI"
LOG_RUN = "LOG/RUN"
LOG_CUSTOM = "LOG/CUSTOM"

#: Every ``TYPE`` swergio 0.0.2 defines; ``swergio.MESSAGE_TYPE.by_id`` finds
#: exactly these.
MESSAGE_TYPES = frozenset(
    {
        DATA_FORWARD,
        DATA_GRADIENT,
        DATA_REWARD,
        DATA_TEXT,
        DATA_CUSTOM,
        COMMAND_REGISTER,
        COMMAND_DISCONNECT,
        COMMAND_JOINROOM,
        COMMAND_LEAVEROOM,
        COMMAND_ENABLELOGGING,
        COMMAND_DISABLELOGGING,
        COMMAND_SAVEMODELWEIGHTS,
        COMMAND_LOADMODELWEIGHTS,
        COMMAND_SAVESETTINGS,
        COMMAND_LOADSETTINGS,
        COMMAND_CUSTOM,
        LOG_MODELWEIGHTS,
        LOG_SETTINGS,
        LOG_MESSAGES,
        LOG_KPI,
        LOG_RUN,
        LOG_CUSTOM,
    }
)

#: The types swergio's server copies, wrapped in a ``LOG/MESSAGES`` message,
#: to the ``_logging`` room (``Server.broadcast_message``).  A tuple, not a
#: set: a peer's ``TYPE`` may be a list, which ``in`` must compare, not hash.
LOGGED_TYPES = (DATA_FORWARD, DATA_GRADIENT)

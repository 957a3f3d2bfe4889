"""The original torch aggregator component, as in the swergio tutorial
(``03_aggregation.rst``), for the tests and the benchmarks' baseline.

Changed only so it can be started against a given server: ``SERVER`` and
``PORT`` come from the command line, and ``NR_OF_MODELS`` from an optional
third argument.  ``get_action`` is imported from ``torch_baseline.py``, where the
tutorial's function is kept unchanged for the in-process baselines too.
Everything else is the tutorial's code.
"""

import copy
import sys

import torch  # noqa: F401  (imported as in the tutorial)
from swergio import MESSAGE_TYPE, Client, Trigger
from torch_baseline import get_action  # the tutorial's get_action, kept there unchanged

COMPONENT_NAME = "aggregation"
SERVER = sys.argv[1]
PORT = int(sys.argv[2])
FORMAT = "utf-8"
HEADER_LENGTH = 10

NR_OF_MODELS = int(sys.argv[3]) if len(sys.argv) > 3 else 20
memory = {}
contribution_memory = {}
client = Client(
    COMPONENT_NAME,
    SERVER,
    PORT,
    FORMAT,
    HEADER_LENGTH,
    memory=memory,
    contribution_memory=contribution_memory,
)


def aggregate(msg, memory, contribution_memory):
    if "LOGITS" in msg.keys() and "COMPONENT_ID" in msg.keys():
        id = msg["COMPONENT_ID"]
        logits = msg["LOGITS"]
        memory[id] = logits
    if len(memory.keys()) == NR_OF_MODELS:
        action, contribution = get_action(memory, deterministic=msg["DETERMINISTIC"])
        for k, v in contribution.items():
            if k in contribution_memory.keys():
                contribution_memory[k] += float(v)
            else:
                contribution_memory[k] = float(v)
        memory.clear()
        return {"ACTION": action.tolist()}
    return None


client.add_eventHandler(
    aggregate,
    MESSAGE_TYPE.DATA.CUSTOM,
    responseRooms="action",
    trigger=Trigger(MESSAGE_TYPE.DATA.CUSTOM, "logits"),
)


def send_contribution(msg, contribution_memory):
    if "CMD" in msg.keys():
        if msg["CMD"] == "GET":
            contribution = copy.deepcopy(contribution_memory)
            contribution_memory.clear()
            print(contribution)
            return {"CONTRIBUTION": contribution}


client.add_eventHandler(
    send_contribution,
    MESSAGE_TYPE.DATA.CUSTOM,
    responseRooms="evolution",
    trigger=Trigger(MESSAGE_TYPE.DATA.CUSTOM, "evolution"),
)

client.listen()

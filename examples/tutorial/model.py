"""02_model.py: one policy model (run it once per model).

It reads each observation in the ``observation`` room and answers in the
``logits`` room with its action logits.  A small random linear policy stands
in for a trained network; the messages are exactly those of the original
tutorial's models.
"""

import sys
import uuid

import numpy as np
from common import FORMAT, HEADER_LENGTH, PORT, SERVER
from swergio import MESSAGE_TYPE, Client, Trigger

seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
COMPONENT_ID = uuid.uuid4().hex
weights = np.random.default_rng(seed).normal(scale=5.0, size=(2, 4))
client = Client(f"model-{seed}", SERVER, PORT, FORMAT, HEADER_LENGTH, weights=weights)


def act(msg, weights):
    if "OBSERVATION" not in msg:
        return None
    logits = weights @ np.asarray(msg["OBSERVATION"])
    return {
        "LOGITS": logits.tolist(),
        "COMPONENT_ID": COMPONENT_ID,
        "DETERMINISTIC": False,
    }


client.add_eventHandler(
    act,
    MESSAGE_TYPE.DATA.CUSTOM,
    responseRooms="logits",
    trigger=Trigger(MESSAGE_TYPE.DATA.CUSTOM, "observation"),
)
client.listen()

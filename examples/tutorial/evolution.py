"""05_evolution.py: asks for every model's contribution and ranks the models.

It counts the aggregator's actions in the ``action`` room and, every
``EVERY`` steps (second argument; default 50), sends ``{"CMD": "GET"}`` to
the ``evolution`` room and prints the ``CONTRIBUTION`` reply, best model
first.  An evolutionary loop would keep the best models and replace the
rest.  It stops after ``GETS`` replies (first argument; default 3), so start
it before the environment, which must run at least ``GETS x EVERY`` steps.

Counting steps rather than seconds keeps every reply meaningful whatever the
speed of the loop: 7 steps a second through the stock server or hundreds
through ``agg-server``.
"""

import sys
import uuid

from common import FORMAT, HEADER_LENGTH, PORT, SERVER
from swergio import Client

GETS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
EVERY = int(sys.argv[2]) if len(sys.argv) > 2 else 50


def next_message(client):
    msg = client.receive()
    if msg is False:
        sys.exit("evolution: connection closed")
    return msg


client = Client("evolution", SERVER, PORT, FORMAT, HEADER_LENGTH)
client.join_room("evolution")
client.join_room("action")
print(
    f"evolution: waiting for the environment's steps (a GET every {EVERY})", flush=True
)
steps = 0
for _ in range(GETS):
    while steps < EVERY:
        if "ACTION" in next_message(client):
            steps += 1
    steps = 0
    client.send(
        {
            "ID": uuid.uuid4().hex,
            "TYPE": "DATA/CUSTOM",
            "TO_ROOM": "evolution",
            "CMD": "GET",
        }
    )
    msg = next_message(client)
    while "CONTRIBUTION" not in msg:
        if "ACTION" in msg:  # steps go on while the reply is on its way
            steps += 1
        msg = next_message(client)
    ranking = sorted(msg["CONTRIBUTION"].items(), key=lambda kv: -kv[1])
    total = sum(msg["CONTRIBUTION"].values())
    print(
        f"evolution: {total:.0f} rounds: "
        + ", ".join(f"{k[:6]} {v:.2f}" for k, v in ranking),
        flush=True,
    )
client.close()

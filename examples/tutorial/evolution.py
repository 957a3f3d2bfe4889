"""05_evolution.py: asks for every model's contribution and ranks the models.

It sends ``{"CMD": "GET"}`` to the ``evolution`` room every few seconds and
prints the ``CONTRIBUTION`` reply, best model first.  An evolutionary loop
would keep the best models and replace the rest.  It stops after ``GETS``
replies (first argument; default 3).
"""

import sys
import time
import uuid

from common import FORMAT, HEADER_LENGTH, PORT, SERVER
from swergio import Client

GETS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
INTERVAL = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0

client = Client("evolution", SERVER, PORT, FORMAT, HEADER_LENGTH)
client.join_room("evolution")
for _ in range(GETS):
    time.sleep(INTERVAL)
    client.send(
        {
            "ID": uuid.uuid4().hex,
            "TYPE": "DATA/CUSTOM",
            "TO_ROOM": "evolution",
            "CMD": "GET",
        }
    )
    msg = client.receive()
    while msg is not False and "CONTRIBUTION" not in msg:
        msg = client.receive()
    if msg is False:
        sys.exit("evolution: connection closed")
    ranking = sorted(msg["CONTRIBUTION"].items(), key=lambda kv: -kv[1])
    print("evolution: " + ", ".join(f"{k[:6]} {v:.2f}" for k, v in ranking))
client.close()

"""The original torch aggregator component, as in the swergio tutorial
(``03_aggregation.rst``), for the benchmarks' baseline.

Changed only so it can be started against a given server: ``SERVER`` and
``PORT`` come from the command line, and ``NR_OF_MODELS`` from an optional
third argument.  Everything else is the tutorial's code.
"""

import copy
import sys

import torch
from swergio import MESSAGE_TYPE, Client, Trigger
from torch.distributions import Categorical
from torch.distributions.utils import logits_to_probs

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


def get_action(dict_actions_logits, deterministic=False):
    all_probs = torch.stack(
        [
            logits_to_probs(torch.tensor(v).unsqueeze(0))
            for v in dict_actions_logits.values()
        ]
    )
    probs = all_probs.sum(0)
    dist = Categorical(probs=probs)
    if deterministic:
        action = torch.argmax(dist.probs, dim=1)
    else:
        action = dist.sample()
    action = action.numpy()
    ai = action[0]
    ai_cont = (all_probs[:, :, ai].squeeze() / probs[:, ai]).numpy()
    contribution = {k: ai_cont[i] for i, k in enumerate(dict_actions_logits.keys())}
    return action, contribution


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

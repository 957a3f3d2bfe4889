"""Settings every component of the tutorial shares (as in the original tutorial)."""

import os

SERVER = os.environ.get("TUTORIAL_SERVER", "127.0.0.1")
PORT = int(os.environ.get("TUTORIAL_PORT", "8080"))
FORMAT = "utf-8"
HEADER_LENGTH = 10
NR_OF_MODELS = int(os.environ.get("TUTORIAL_MODELS", "5"))

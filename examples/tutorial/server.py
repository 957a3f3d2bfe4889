"""01_server.py: the swergio server every component connects to."""

from common import FORMAT, HEADER_LENGTH, PORT, SERVER
from swergio import Server

server = Server(SERVER, PORT, FORMAT, HEADER_LENGTH)
server.start()

"""The top of the import graph: the `llmflow` command (main.py), `make dev`'s stack
(devstack.py) and the Python client of the gateway (client.py). They start or talk to the
gateway and the worker, so they may import api/ and worker/; nothing below them imports them."""

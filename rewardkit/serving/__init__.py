"""The reward model over HTTP: the FastAPI app (server), its request models, the scoring service and its dynamic
batcher, the guard (key, body size, draining), Prometheus metrics, OpenRLHF's protocol, the runner, and the
client.

May import: every layer below (the ground floor, data, encoding, modeling, scoring).
"""

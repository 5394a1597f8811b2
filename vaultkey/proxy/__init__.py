"""The vaultkey proxy: a FastAPI app (served by uvicorn over TLS) in front of etcd.

It authenticates tokens, enforces the ACL policies, checks envelopes at write
time and stores exactly the ciphertext it was given. It never holds, loads or
imports private-key code (``tests/unit/test_architecture.py`` enforces that).

Build the app with :func:`vaultkey.proxy.app.create_app`; run it with
:func:`vaultkey.proxy.server.serve` (what ``vaultkey serve`` does).
"""

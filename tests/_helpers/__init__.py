"""Helpers shared by every test layer: polling, child processes, ports.

- :func:`wait_until` (``tests._helpers.wait``): the one polling helper.
- ``tests._helpers.procs``: children that obey SIGINT, stopped even on timeout,
  servers and etcd started on a free port with a retry if it was taken.
"""

from tests._helpers.wait import wait_until

__all__ = ["wait_until"]

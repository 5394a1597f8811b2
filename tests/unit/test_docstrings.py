"""The runnable examples in module docstrings stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

PURE_MODULES = ["vaultkey", "vaultkey.errors", "vaultkey.paths", "vaultkey.keys",
                "vaultkey.envelope", "vaultkey.crypto", "vaultkey.policy.engine",
                "vaultkey.policy.parse",
                "vaultkey.client.trust", "vaultkey.proxy.tokens", "vaultkey.client._transport",
                "vaultkey.client.settings", "vaultkey._net", "vaultkey.client._sse",
                "vaultkey.proxy.console"]


@pytest.mark.parametrize("name", PURE_MODULES)
def test_module_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0

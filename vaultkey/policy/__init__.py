"""Policies: which group may do what on which path.

* :mod:`~vaultkey.policy.engine`: the pure decision engine (rules, decide, explain);
* :mod:`~vaultkey.policy.parse`: policy TOML text to :class:`~vaultkey.policy.engine.Policy`,
  with file:line errors (pure);
* :mod:`~vaultkey.policy.load`: reads a policy directory and resolves recipient keys (the
  only module here that touches files).
"""

"""``vaultkey render``: confd-style configuration files from templates, with secrets.

* :mod:`~vaultkey.render.template`: Jinja2's sandbox with strict undefined names, and the
  helpers templates call (``get``, ``getv``, ``ls``, ``gets``, ``json``, base64,
  ``services``), all over one :class:`~vaultkey.client._snapshot.Snapshot`;
* :mod:`~vaultkey.render.resource`: the TOML resource file (several templates, one process);
* :mod:`~vaultkey.render.output`: staging next to the destination, the check command on the
  staged file, the atomic rename, the reload command; each command under a timeout that
  kills its whole process group.
"""

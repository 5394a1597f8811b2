"""The architecture, enforced: who may import whom (docs/ARCHITECTURE.md draws it).

* the proxy never imports the SDK (``vaultkey.client``), secret-key code
  (``vaultkey.crypto``, ``nacl``) or the CLI;
* the SDK (``vaultkey.client``) never imports the proxy;
* ``vaultkey.policy`` does no I/O except in its loader;
* routes, listings, authz and the token registry depend on the store protocol,
  never on the etcd module;
* nothing but the CLI imports click.
"""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
import vaultkey.proxy.app, vaultkey.proxy.server, vaultkey.proxy.authz
from vaultkey.proxy.app import create_app
print(json.dumps(sorted(sys.modules)))
"""


def test_proxy_app_imports_no_private_key_code():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    modules = set(json.loads(out))
    assert "vaultkey.proxy.app" in modules
    assert "vaultkey.crypto" not in modules
    assert not {m for m in modules if m == "nacl" or m.startswith("nacl.")}
    assert "vaultkey.client" not in modules


def test_cli_start_does_not_import_heavy_modules():
    probe = ("import sys, json; from vaultkey._cli import main; "
             "print(json.dumps(sorted(sys.modules)))")
    modules = set(json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True,
                                            text=True, check=True, timeout=60).stdout))
    for heavy in ("fastapi", "uvicorn", "httpx", "grpc", "etcd3", "nacl"):
        assert heavy not in modules, heavy


def test_pure_modules_do_no_io():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "vaultkey"
    for name in ("envelope.py", "policy/engine.py", "policy/parse.py", "paths.py", "errors.py",
                 "proxy/authz.py", "policy/__init__.py"):
        tree = ast.parse((root / name).read_text())
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                    for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree)
                     if isinstance(n, ast.ImportFrom) and n.module}
        assert not imported & {"os", "pathlib", "socket", "subprocess", "httpx", "etcd3",
                               "grpc", "io", "shutil"}, name
        calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call)
                 and isinstance(n.func, ast.Name)}
        assert "open" not in calls, name


def test_public_api_all_matches_what_is_importable():
    import inspect

    import vaultkey

    for name in vaultkey.__all__:
        assert getattr(vaultkey, name) is not None, name
    public = {n for n in dir(vaultkey) if not n.startswith("_")
              and not inspect.ismodule(getattr(vaultkey, n))} | set(vaultkey._LAZY)
    assert public - {"TYPE_CHECKING", "Any", "annotations"} == set(vaultkey.__all__) - {
        "__version__"}


def test_sdk_never_imports_the_proxy():
    probe = ("import sys, json, vaultkey; from vaultkey.client import Client, AsyncClient; "
             "print(json.dumps(sorted(sys.modules)))")
    modules = set(json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True,
                                            text=True, check=True, timeout=60).stdout))
    assert not {m for m in modules if m.startswith("vaultkey.proxy")}
    assert "fastapi" not in modules and "uvicorn" not in modules


def test_dependency_rules_between_modules():
    """errors is a leaf; paths/keys/envelope/acl/aclparse use only leaves; crypto adds
    envelope; the proxy never imports crypto or nacl; nothing but the CLI imports click."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "vaultkey"

    def imports(name: str) -> set[str]:
        tree = ast.parse((root / name).read_text())
        found = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        found |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        return {m for m in found if m.startswith("vaultkey") or m in ("click", "nacl")
                or m.startswith("nacl.")}

    allowed = {
        "errors.py": set(),
        "paths.py": {"vaultkey.errors"},
        "keys.py": {"vaultkey.errors"},
        "envelope.py": {"vaultkey.errors", "vaultkey.paths"},
        "policy/engine.py": {"vaultkey.errors", "vaultkey.paths", "vaultkey.policy.trie"},
        "policy/trie.py": set(),
        "policy/parse.py": {"vaultkey.policy.engine", "vaultkey.errors", "vaultkey.paths"},
    }
    for name, ok in allowed.items():
        assert imports(name) <= ok, (name, imports(name) - ok)
    for path in (root / "proxy").rglob("*.py"):
        found = imports(str(path.relative_to(root)))
        assert not {m for m in found if m == "vaultkey.crypto" or m.startswith("nacl")
                    or m == "vaultkey.client" or m == "click"}, path
    for path in root.rglob("*.py"):
        if "_cli" not in path.parts:
            assert "click" not in imports(str(path.relative_to(root))), path


def _imports(path) -> set[str]:  # type: ignore[no-untyped-def]
    import ast

    tree = ast.parse(path.read_text())
    found = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    found |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return found


def _package(name: str):  # type: ignore[no-untyped-def]
    from pathlib import Path

    return sorted((Path(__file__).resolve().parents[2] / "vaultkey" / name).rglob("*.py"))


def test_the_proxy_never_imports_the_sdk_secret_keys_or_the_cli():
    for path in _package("proxy"):
        bad = {m for m in _imports(path) if m.startswith(("vaultkey.client", "vaultkey.crypto",
                                                           "vaultkey._cli", "nacl", "click"))}
        assert not bad, (path, bad)


def test_the_sdk_never_imports_the_proxy_or_the_cli():
    for path in _package("client"):
        bad = {m for m in _imports(path) if m.startswith(("vaultkey.proxy", "vaultkey._cli",
                                                           "fastapi", "uvicorn", "etcd3"))}
        assert not bad, (path, bad)


def test_policy_has_no_io_outside_its_loader():
    io = ("os", "pathlib", "io", "socket", "subprocess", "shutil", "httpx", "etcd3", "grpc")
    for path in _package("policy"):
        if path.name == "load.py":
            continue
        bad = {m for m in _imports(path) if m.split(".")[0] in io}
        assert not bad, (path, bad)
        assert "open(" not in path.read_text(), path


def test_routes_and_the_token_registry_depend_on_the_store_protocol_not_on_etcd():
    from pathlib import Path

    proxy = Path(__file__).resolve().parents[2] / "vaultkey" / "proxy"
    users = [*sorted((proxy / "routes").glob("*.py")), proxy / "tokens.py",
             proxy / "listing.py", proxy / "authz.py", proxy / "deps.py", proxy / "app.py",
             proxy / "middleware.py"]
    for path in users:
        bad = {m for m in _imports(path) if m.startswith(("vaultkey.proxy.store.etcd", "etcd3",
                                                           "grpc"))}
        assert not bad, (path, bad)


def test_no_module_is_over_400_lines():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "vaultkey"
    long = {str(p.relative_to(root)): n for p in root.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long

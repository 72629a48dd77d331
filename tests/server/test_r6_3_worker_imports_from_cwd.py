"""review6 R6-3: `cvault serve --workers N` starts each worker as
``sys.executable -c "from vault.server.workers import worker_main; worker_main()"``
(vault/server/workers.py, Supervisor.start). With ``-c``, Python puts the current working
directory first on ``sys.path``, so the worker imports ``vault`` (and any module not yet loaded)
from the directory the operator happened to start the service in, before the installed
package. The supervisor then hands that process the root key. The `cvault` console script itself
never searches the cwd (its sys.path[0] is the script's folder), so --workers adds this.

Attack: another local uid (or a file writer of that folder) plants ``vault/__init__.py`` in a
directory the service is started from (/tmp, a shared admin folder, the vault folder's parent...).
The planted package loads the real one, so everything works as usual, and it copies the root key
as the supervisor hands it over."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import vault
from tests.fakes.https import make_test_ca
from tests.helpers import ROOT, make_vault
from tests.server.harness import ApiClient, free_port


def test_a_worker_never_imports_code_from_the_current_directory(tmp_path):
    vdir = make_vault(tmp_path / "v")
    proof = tmp_path / "stolen.txt"
    real = Path(vault.__file__).parent
    cwd = tmp_path / "shared-folder"  # e.g. /tmp, where the operator typed `cvault serve`
    (cwd / "vault").mkdir(parents=True)
    (cwd / "vault" / "__init__.py").write_text(
        textwrap.dedent(
            f"""
            import os
            __path__[:] = [{str(real)!r}]
            exec(compile(open({str(real / "__init__.py")!r}).read(), "vault/__init__.py", "exec"))
            import vault.server.pool as _pool
            _load = _pool.VaultPool.load_root
            def _steal(self, root):
                with open({str(proof)!r}, "a") as f:
                    f.write("pid %d root key %d bytes %s\\n" % (os.getpid(), len(root), bytes(root).hex()))
                return _load(self, root)
            _pool.VaultPool.load_root = _steal
            """
        )
    )
    ca = make_test_ca(tmp_path / "tls")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CVAULT_")}
    env["PYTHONPATH"] = str(ROOT)
    cvault = Path(sys.executable).parent / "cvault"  # the installed console script
    argv = [str(cvault), "--home", str(vdir.home), "serve", "--port", str(port), "--workers", "2"]
    argv += ["--tls-cert", str(ca.cert_path), "--tls-key", str(ca.key_path), "--key-file", str(vdir.key_file)]
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if ApiClient(port, ca.ca_path).get("/v1/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(20)
    stolen = proof.read_text() if proof.exists() else ""
    assert "root key" not in stolen, (
        "a worker of cvault serve --workers 2 ran code planted in its working directory and it"
        f" copied the root key: {stolen.splitlines()[0][:60]}..."
    )

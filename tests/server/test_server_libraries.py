"""``cvault serve`` runs on uvloop (its event loop) with no fallback to a slower path
(docs/dependencies.md): when the library cannot be imported (a broken install), the service
refuses in one clear line and a documented exit code before it listens, not with a traceback from
inside uvicorn or from a worker process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.fakes.https import make_test_ca
from tests.helpers import ROOT, make_vault
from tests.server.harness import free_port
from vault.errors import EXIT_ERROR
from vault.server.run import SERVER_LIBRARIES


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("library", SERVER_LIBRARIES)
def test_serve_refuses_in_one_line_without_its_libraries(tmp_path, library, workers):
    vdir = make_vault(tmp_path / "v")
    ca = make_test_ca(tmp_path / "tls")
    broken = tmp_path / "broken" / library  # a package that cannot be imported, first on the path
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text(f'raise ImportError("No module named {library!r}")\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CVAULT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "broken"), str(ROOT)])
    argv = [sys.executable, "-m", "cli.main", "--home", str(vdir.home), "serve", "--port", str(free_port())]
    argv += ["--tls-cert", str(ca.cert_path), "--tls-key", str(ca.key_path), "--key-file", str(vdir.key_file)]
    argv += ["--workers", workers]
    proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_ERROR, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-2000:]
    assert library in lines[0] and "Traceback" not in proc.stderr
    assert "serving" not in proc.stdout

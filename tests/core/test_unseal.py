"""Unseal and open failures: one clear line each, with the documented exit code."""

import os

import pytest

from tests.helpers import make_vault, run_cli
from vault.facade import Vault


@pytest.fixture(scope="module")
def pass_vault(tmp_path_factory):
    base = tmp_path_factory.mktemp("pv")
    v, result = Vault.init(
        base / "vault",
        passphrase="correct horse battery",
        kdf_params={"memory_kib": 65536, "iterations": 1, "lanes": 4},
    )
    v.close()
    return base, result.recovery_key


def _env(home, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CVAULT_")}
    env.update(CVAULT_HOME=str(home), **extra)
    return env


def _one_line(proc, code, text):
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], proc.stderr


def test_wrong_passphrase(pass_vault, tmp_path):
    base, _ = pass_vault
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    wrong.chmod(0o600)  # cvault refuses secret files others can read
    proc = run_cli("client", "list", env=_env(base / "vault", CVAULT_PASSPHRASE_FILE=str(wrong)))
    _one_line(proc, 3, "wrong passphrase")


def test_right_passphrase_and_recovery_key(pass_vault, tmp_path):
    base, recovery = pass_vault
    right = tmp_path / "right"
    right.write_text("correct horse battery\n")
    right.chmod(0o600)  # cvault refuses secret files others can read
    # doctor runs without a session (system principal): this checks the unseal alone
    proc = run_cli(
        "doctor",
        env=_env(
            base / "vault",
            CVAULT_PASSPHRASE_FILE=str(right),
            CVAULT_SESSION_FILE=str(tmp_path / "no-session.json"),
        ),
    )
    assert proc.returncode == 0, proc.stderr
    v = Vault.open(base / "vault")
    v.unseal_recovery_key(recovery.lower().replace("-", " "))
    assert v.unsealed
    v.close()


def test_missing_key_file(vdir, tmp_path):
    proc = run_cli("client", "list", env=vdir.env(CVAULT_KEY_FILE=str(tmp_path / "nope.key")))
    _one_line(proc, 8, "key file")


def test_key_file_of_another_vault(vdir, tmp_path):
    other = make_vault(tmp_path / "other")
    proc = run_cli("client", "list", env=vdir.env(CVAULT_KEY_FILE=str(other.key_file)))
    _one_line(proc, 3, "wrong key file")


def test_garbage_key_file(vdir, tmp_path):
    bad = tmp_path / "bad.key"
    bad.write_text("hello\n")
    bad.chmod(0o600)  # cvault refuses secret files others can read
    proc = run_cli("client", "list", env=vdir.env(CVAULT_KEY_FILE=str(bad)))
    _one_line(proc, 3, "not a cvault key file")


def test_no_unseal_material_without_a_terminal(vdir):
    env = vdir.env()
    del env["CVAULT_KEY_FILE"]
    _one_line(run_cli("client", "list", env=env), 8, "vault sealed")


def test_missing_vault(tmp_path):
    proc = run_cli("client", "list", env=_env(tmp_path / "nothing-here"))
    _one_line(proc, 5, "no vault at")


@pytest.mark.parametrize("target", ["", "vault.db", "blobs"])
def test_files_readable_by_others_are_refused(vdir, target):
    path = vdir.home / target if target else vdir.home
    os.chmod(path, 0o755 if path.is_dir() else 0o644)
    proc = vdir.cli("client", "list")
    _one_line(proc, 8, "accessible by other users")


def test_init_refuses_an_existing_vault(vdir, tmp_path):
    proc = run_cli("init", "--no-passphrase", "--key-file", str(tmp_path / "k2"), env=vdir.env())
    assert proc.returncode != 0 and "already exists" in proc.stderr


def test_new_vault_files_are_private(tmp_path):
    vd = make_vault(tmp_path)
    for p in [vd.home, vd.home / "vault.db", vd.key_file, vd.home / "blobs"]:
        assert os.stat(p).st_mode & 0o077 == 0, p

"""A real OpenSSH server for the SFTP tests: Debian's `sshd` (`make sftp` installs it), started
on a free port with its own configuration, a throw-away host key and a throw-away client key,
changing nothing on the system.

sshd runs as the current user and can then authenticate only that user. As root (a container),
sshd would need /run/sshd for its privilege separation, so it drops to `nobody` instead and
the files it serves live in a directory `nobody` can read. Password authentication needs the
system's password database and is not tested here; key authentication is.
"""

from __future__ import annotations

import getpass
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from project.devservices import free_port
from tests.drop_support import DELIVERED_AGO_SECONDS

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _keygen(path: Path, passphrase: str = "") -> str:
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-a",
            "2",
            "-N",
            passphrase,
            "-C",
            "",
            "-f",
            str(path),
        ],
        check=True,
    )
    return path.read_text()


class SftpServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = root / "files"
        self.files.mkdir()
        self.port = free_port()
        as_root = os.geteuid() == 0
        self.user = "nobody" if as_root else getpass.getuser()
        self._drop = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        self._drop = self._drop if as_root else []
        self.client_passphrase = "correct horse battery"
        self.client_key = _keygen(root / "client_key", self.client_passphrase)
        (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
        self.process: subprocess.Popen | None = None
        self.new_host_key()

    def url(self, path: str) -> str:
        return f"sftp://{self.user}@127.0.0.1:{self.port}{self.files}/{path}"

    def put(self, name: str, body: str | bytes, mtime: float | None = None) -> Path:
        path = self.files / name
        path.write_bytes(body.encode() if isinstance(body, str) else body)
        path.chmod(0o644)
        if mtime is None:
            mtime = time.time() - DELIVERED_AGO_SECONDS
        os.utime(path, (mtime, mtime))
        return path

    @property
    def credential(self) -> dict[str, str]:
        return {
            "kind": "private_key",
            "private_key": self.client_key,
            "passphrase": self.client_passphrase,
        }

    def new_host_key(self) -> None:
        """A new host key, the server restarted on the same port with it (a reinstalled host)."""
        self.stop()
        for name in ("host_key", "host_key.pub"):
            (self.root / name).unlink(missing_ok=True)
        _keygen(self.root / "host_key")
        self.start()

    def start(self) -> None:
        config = self.root / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.root}/host_key\n"
            f"PidFile {self.root}/sshd.pid\nAuthorizedKeysFile {self.root}/authorized_keys\n"
            "UsePAM yes\nStrictModes no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPrintMotd no\nPermitRootLogin no\n"
            "Subsystem sftp internal-sftp\nForceCommand internal-sftp\nLogLevel VERBOSE\n"
        )
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            for path in self.root.iterdir():
                os.chown(path, nobody.pw_uid, nobody.pw_gid)
        log_path = self.root / "sshd.log"
        # A restarted server appends: only what it logs after this offset says it is up.
        since = log_path.stat().st_size if log_path.exists() else 0
        self.log = open(log_path, "ab")  # noqa: SIM115 (lives as long as sshd)
        self.process = subprocess.Popen(
            [*self._drop, SSHD, "-D", "-e", "-f", str(config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while b"Server listening" not in log_path.read_bytes()[since:]:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("sshd did not start:\n" + self.logs())
            time.sleep(0.05)

    def logs(self) -> str:
        return (self.root / "sshd.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
            self.log.close()
        self.process = None


@pytest.fixture
def sftp_server() -> Iterator[SftpServer]:
    if not os.path.exists(SSHD):
        pytest.fail("OpenSSH's sshd is not installed: run `make sftp` (Debian's openssh-server)")
    # Not pytest's tmp_path: as root, `nobody` must be able to reach the files sshd serves.
    root = Path(tempfile.mkdtemp(prefix="importbeat-sftp-"))
    root.chmod(0o755)
    server = SftpServer(root)
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


# One key for the suite's credentials (the processes a test starts get it in their environment).
TEST_ENCRYPTION_KEY = "YCykwcPKxqBwokCnEoVuqSQw2mL0JTOJ8tsYT2ef6Ow="


@pytest.fixture
def encryption_key(settings) -> str:
    settings.IMPORTBEAT_ENCRYPTION_KEYS = [TEST_ENCRYPTION_KEY]
    return TEST_ENCRYPTION_KEY

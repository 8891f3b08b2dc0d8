"""A small SFTP server in the test's own process (paramiko's server side), for what OpenSSH's
sshd cannot do unprivileged: password authentication (it needs a system account's password)
and a server that answers slowly on purpose (the watchdog's deadline)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest


class _Auth(paramiko.ServerInterface):
    def __init__(self, password: str) -> None:
        self.password = password

    def get_allowed_auths(self, username: str) -> str:
        return "password"

    def check_auth_password(self, username: str, password: str) -> int:
        ok = username == "feed" and password == self.password
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


class _Handle(paramiko.SFTPHandle):
    delay = 0.0
    fstat = True

    def read(self, offset: int, length: int):
        time.sleep(self.delay)
        return super().read(offset, length)

    def stat(self):
        if not self.fstat:
            return paramiko.sftp.SFTP_OP_UNSUPPORTED
        return paramiko.SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))


def _files(root: Path, delay: float, fstat: bool) -> type[paramiko.SFTPServerInterface]:
    class Files(paramiko.SFTPServerInterface):
        def _local(self, path: str) -> str:
            return str(root / path.lstrip("/"))

        def stat(self, path: str):
            try:
                return paramiko.SFTPAttributes.from_stat(os.stat(self._local(path)))
            except OSError as error:
                return paramiko.SFTPServer.convert_errno(error.errno)

        lstat = stat

        def list_folder(self, path: str):
            local = self._local(path)
            return [
                paramiko.SFTPAttributes.from_stat(os.stat(os.path.join(local, name)), name)
                for name in os.listdir(local)
            ]

        def open(self, path: str, flags: int, attr):
            try:
                readfile = open(self._local(path), "rb")  # noqa: SIM115 (the handle closes it)
            except OSError as error:
                return paramiko.SFTPServer.convert_errno(error.errno)
            handle = _Handle(flags)
            handle.delay, handle.fstat = delay, fstat
            handle.readfile, handle.filename = readfile, self._local(path)
            return handle

    return Files


class PasswordSftpServer:
    user = "feed"
    password = "sftp-pa55word"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.delay = 0.0
        # False: a server that does not answer SFTP's FSTAT (stat of an open file).
        self.fstat = True
        self.host_key = paramiko.Ed25519Key.from_private_key_file(str(self._keygen(root)))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.transports: list[paramiko.Transport] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @staticmethod
    def _keygen(root: Path) -> Path:
        from tests.sftp_support import _keygen

        _keygen(root / "host_key")
        return root / "host_key"

    def url(self, path: str) -> str:
        return f"sftp://{self.user}@127.0.0.1:{self.port}/{path}"

    def put(self, name: str, body: str) -> None:
        from tests.drop_support import put

        put(self.root / name, body)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            transport = paramiko.Transport(conn)
            transport.add_server_key(self.host_key)
            transport.set_subsystem_handler(
                "sftp", paramiko.SFTPServer, _files(self.root, self.delay, self.fstat)
            )
            self.transports.append(transport)
            transport.start_server(server=_Auth(self.password))

    def close(self) -> None:
        self.listener.close()
        for transport in self.transports:
            transport.close()


@pytest.fixture
def password_sftp_server(tmp_path) -> Iterator[PasswordSftpServer]:
    server = PasswordSftpServer(tmp_path)
    yield server
    server.close()

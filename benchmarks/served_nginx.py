"""Debian's nginx serving a published directory at ``/lists/`` for a benchmark: on a free loopback
port, with Debian's defaults where they matter for serving big static files (a worker a core,
``sendfile on``), waited for, stopped at the end (the scripts put the project's root on
``sys.path`` before importing this). The same way of starting it as the tests' ``nginx`` fixture
(tests/firmware/test_list_files.py: a config in a temp dir, ``-c`` and ``-p``, ``daemon off``),
which is a pytest fixture with one worker and 64 connections, so not for 100 gates at once."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from served import wait_up

from tests.hub.pgcluster import free_port

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


@contextmanager
def served_nginx(root: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """(base URL, the nginx master process) of nginx serving ``root`` at ``<base>/lists/``."""
    if NGINX is None:
        raise RuntimeError("nginx is not installed (apt-get install nginx-light)")
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as tmp:
        base = f"http://127.0.0.1:{free_port()}"
        conf = Path(tmp, "nginx.conf")
        user = "user root;" if os.getuid() == 0 else ""  # its workers read a private temp dir
        conf.write_text(f"""daemon off; worker_processes auto; pid {tmp}/nginx.pid; {user}
error_log {tmp}/error.log;
events {{ worker_connections 1024; }}
http {{
  sendfile on; tcp_nopush on; access_log off;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  server {{ listen {base.removeprefix("http://")}; location /lists/ {{ alias {root}/; }} }}
}}
""")
        proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", tmp])
        try:
            wait_up(f"{base}/lists/", proc, "nginx (its message is above)")
            yield base, proc
        finally:
            proc.terminate()
            proc.wait(30)


def version() -> str:
    """``nginx/1.22.1``, say."""
    assert NGINX is not None
    out = subprocess.run([NGINX, "-v"], capture_output=True, text=True, check=True)
    return out.stderr.strip().removeprefix("nginx version: ")

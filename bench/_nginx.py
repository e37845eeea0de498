"""nginx with Debian's ``libnginx-mod-rtmp``, run as the peer the benchmarks compare with.

``find_nginx()`` says how to run it here (or why it cannot run); ``Nginx``
starts one from a generated nginx.conf in a temporary directory: daemon off,
master_process off (one process does all the work, so its CPU and RSS are
read from /proc of one pid), ``chunk_size 4096`` as ours, one
``application NAME { live on; }`` per name asked for, listening on HOST at a
port the OS picked.  Its access log is on, as nginx-rtmp's default has it
(one line per session, when the session ends), since ours logs each
connect and each leave by default: each server logs as it does out of the
box.  It is killed if the benchmark dies (PR_SET_PDEATHSIG).
Used by ``bench/streaming.py`` and ``bench/connections.py``.
"""
import asyncio
import collections
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from _common import HOST

NGINX_CONF = """\
{load_module}
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 65536;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{
    worker_connections 65536;
}}
rtmp {{
    access_log {dir}/access.log;
    server {{
        listen {host}:{port};
        chunk_size 4096;
{applications}
    }}
}}
"""


def _conf(load_module: str, directory: str, port: int, apps) -> str:
    applications = "\n".join(f"        application {app} {{\n            live on;\n        }}" for app in apps)
    return NGINX_CONF.format(load_module=load_module, dir=directory, host=HOST, port=port,
                             applications=applications)


def die_with_parent():
    """preexec_fn: SIGKILL this child when the bench process dies (prctl PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def read_tail(path, lines=10) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(collections.deque(f, lines))
    except OSError:
        return ""


async def stop_process(process, sig=signal.SIGTERM, timeout=10.0):
    if process is None or process.returncode is not None:
        return
    try:
        process.send_signal(sig)
        await asyncio.wait_for(process.wait(), timeout)
    except ProcessLookupError:
        pass
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()


def nginx_command(setup, prefix, conf):
    cmd = [setup["binary"], "-p", prefix + "/", "-c", conf]
    if setup["has_e"]:
        cmd += ["-e", os.path.join(prefix, "error.log")]
    return cmd


def find_nginx(apps=("live",)) -> dict:
    """How to run nginx with the RTMP module here, or {"skip": reason}."""
    binary = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/nginx/sbin/nginx")
                                            if os.access(p, os.X_OK)), None)
    if binary is None:
        return {"skip": "nginx is not installed (apt-get install libnginx-mod-rtmp nginx-light)"}
    built = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=10)
    version_text = (built.stderr + built.stdout)
    version = version_text.splitlines()[0].split(":", 1)[-1].strip() if version_text else "?"
    load_module = ""
    if "rtmp" not in version_text:                     # not built in: a dynamic module
        module = next((p for p in ("/usr/lib/nginx/modules/ngx_rtmp_module.so",
                                   "/usr/share/nginx/modules/ngx_rtmp_module.so",
                                   "/usr/lib64/nginx/modules/ngx_rtmp_module.so") if os.path.exists(p)), None)
        if module is None:
            return {"skip": f"{binary} has no RTMP module (apt-get install libnginx-mod-rtmp)"}
        load_module = f"load_module {module};"
    usage = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=10)
    setup = {"binary": binary, "version": version, "load_module": load_module,
             "has_e": "-e filename" in usage.stderr + usage.stdout}
    module_version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "libnginx-mod-rtmp"],
                                    capture_output=True, text=True) if shutil.which("dpkg-query") else None
    setup["module"] = (f"libnginx-mod-rtmp {module_version.stdout.strip()}"
                       if module_version is not None and module_version.returncode == 0 else "rtmp module")
    with tempfile.TemporaryDirectory(prefix="bench-nginx-test-") as d:
        os.makedirs(os.path.join(d, "logs"))
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(_conf(load_module, d, free_port(), apps))
        test = subprocess.run(nginx_command(setup, d, conf) + ["-t"], capture_output=True, text=True, timeout=20)
        if test.returncode != 0:
            return {"skip": f"nginx -t failed: {(test.stderr + test.stdout).strip()}"}
    return setup


class Nginx:
    """One nginx-rtmp process serving ``apps`` (live applications) on HOST; ``port`` and ``pid`` once started."""

    name = "nginx-rtmp"

    def __init__(self, work_dir, setup, apps=("live",)):
        self.dir = os.path.join(work_dir, "nginx")
        self.setup = setup
        self.apps = apps
        self.process = None
        self.port = self.pid = None

    async def start(self):
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        self.port = free_port()
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(_conf(self.setup["load_module"], self.dir, self.port, self.apps))
        self.process = await asyncio.create_subprocess_exec(
            *nginx_command(self.setup, self.dir, conf), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, preexec_fn=die_with_parent)
        self.pid = self.process.pid
        deadline = time.monotonic() + 15
        while True:
            if self.process.returncode is not None:
                err = (await self.process.stderr.read()).decode(errors="replace")
                raise RuntimeError(f"nginx exited with {self.process.returncode}: {err.strip()}\n"
                                   f"{read_tail(os.path.join(self.dir, 'error.log'))}")
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx did not listen within 15 s")
                await asyncio.sleep(0.05)
        return {}

    async def stats(self):
        return None

    async def stop(self):
        await stop_process(self.process, signal.SIGQUIT)

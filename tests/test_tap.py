"""twistd wiring: parseOptions -> makeService, as Twisted's own web/test/test_tap.py does it."""
import os
import socket

import pytest
from twisted.internet.task import Clock
from twisted.python import usage

from fmspy_gateway import tap
from fmspy_gateway.app.echo import EchoApplication


def write_config(tmp_path, text):
    path = tmp_path / "fmspy.cfg"
    path.write_text(text)
    return str(path)


CONFIG = """
[RTMP]
port = 0
interface = 127.0.0.1
[HTTP]
enabled = yes
port = 0
interface = 127.0.0.1
[EchoApplication]
enabled = yes
name = echotest
"""

#: Services built by ``make``; makeService binds their sockets, which the test must give back.
_made = []


@pytest.fixture(autouse=True)
def close_listeners():
    yield
    while _made:
        top = _made.pop()
        for name in ("rtmp", "http"):
            try:
                top.getServiceNamed(name).stopService()
            except KeyError:
                pass


def make(argv):
    options = tap.Options()
    options.parseOptions(argv)
    top = tap.makeService(options, reactor=Clock())
    _made.append(top)
    return top


def free_port() -> int:
    """A loopback port nobody listens on now (the OS picks it; it is released at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def busy_port():
    """A loopback port held in LISTEN for the whole test, as another server would hold it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


def test_options_and_overrides_reach_the_listeners(tmp_path):
    rtmp_port, http_port = free_port(), free_port()
    top = make(["--config", write_config(tmp_path, CONFIG), "--rtmp-port", str(rtmp_port),
                "--http-port", str(http_port)])
    rtmp = top.getServiceNamed("rtmp")
    http = top.getServiceNamed("http")
    assert rtmp.args[0] == rtmp_port and rtmp.bound.getsockname() == ("127.0.0.1", rtmp_port)
    assert http.args[0] == http_port and http.bound.getsockname() == ("127.0.0.1", http_port)
    factory = rtmp.args[1]
    assert isinstance(factory.applications["echotest"], EchoApplication)


def test_http_disabled_means_no_http_listener(tmp_path):
    top = make(["--config", write_config(tmp_path, CONFIG.replace("enabled = yes\nport = 0", "enabled = no"))])
    with pytest.raises(KeyError):
        top.getServiceNamed("http")


# --- start-up errors: one line naming the option, exit 1 (issue 8, item 14) ----------------------------

def test_rtmp_port_in_use_is_one_line_naming_the_port(tmp_path, capsys, busy_port):
    path = write_config(tmp_path, CONFIG.replace("port = 0", f"port = {busy_port}", 1))
    with pytest.raises(SystemExit) as e:
        make(["--config", path])
    assert e.value.code == 1
    err = one_line(capsys)
    assert f"[RTMP] port = {busy_port}" in err and "already in use" in err and "--rtmp-port" in err


def test_port_given_on_the_command_line_is_named_as_such(tmp_path, capsys, busy_port):
    with pytest.raises(SystemExit):
        make(["--config", write_config(tmp_path, CONFIG), "--http-port", str(busy_port)])
    err = one_line(capsys)
    assert f"--http-port {busy_port}" in err and "already in use" in err


def test_http_port_in_use_gives_back_the_rtmp_socket(tmp_path, capsys, busy_port):
    """The RTMP socket bound just before must not stay open behind a failed start."""
    rtmp_port = free_port()
    with pytest.raises(SystemExit):
        make(["--config", write_config(tmp_path, CONFIG), "--rtmp-port", str(rtmp_port),
              "--http-port", str(busy_port)])
    assert "--http-port" in one_line(capsys)
    with socket.socket() as again:        # bindable again: the failed start let it go
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", rtmp_port))


def test_interface_not_of_this_machine_is_one_line(tmp_path, capsys):
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never an address of a real machine, and no DNS is asked.
    path = write_config(tmp_path, CONFIG.replace("interface = 127.0.0.1", "interface = 192.0.2.1", 1))
    with pytest.raises(SystemExit) as e:
        make(["--config", path])
    assert e.value.code == 1
    err = one_line(capsys)
    assert "[RTMP] interface = 192.0.2.1" in err and "leave interface empty" in err


def test_describe_address_says_who_can_reach_it():
    assert tap.describe_address("0.0.0.0", 1935) == "0.0.0.0:1935 (every interface)"
    assert tap.describe_address("::", 1935) == "[::]:1935 (every interface)"
    assert tap.describe_address("127.0.0.1", 3000) == "127.0.0.1:3000 (loopback only)"
    assert tap.describe_address("192.0.2.7", 3000) == "192.0.2.7:3000 (this address only)"


def record_config(record_dir):
    return CONFIG + f"[LiveApplication]\nenabled = yes\nname = live\nrecordDir = {record_dir}\n"


def test_record_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "recordings").write_text("not a directory")
    path = write_config(tmp_path, record_config("recordings"))
    with pytest.raises(SystemExit) as e:
        make(["--config", path])
    assert e.value.code == 1
    err = one_line(capsys)
    assert path in err and "[LiveApplication] recordDir = recordings" in err and "not a directory" in err


def test_missing_record_dir_is_created(tmp_path):
    make(["--config", write_config(tmp_path, record_config("new/recordings"))])
    assert (tmp_path / "new" / "recordings").is_dir()


def test_record_dir_that_cannot_be_created_is_one_line(tmp_path, capsys):
    (tmp_path / "plain-file").write_text("")
    path = write_config(tmp_path, record_config("plain-file/recordings"))
    with pytest.raises(SystemExit):
        make(["--config", path])
    err = one_line(capsys)
    assert "recordDir = plain-file/recordings" in err and "cannot create" in err


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_record_dir_not_writable_is_one_line(tmp_path, capsys):
    # /proc refuses new files even to root, where a chmod'ed directory would not.
    path = write_config(tmp_path, record_config("/proc"))
    with pytest.raises(SystemExit):
        make(["--config", path])
    err = one_line(capsys)
    assert "recordDir = /proc" in err and "cannot write" in err


def test_bad_port_option_is_a_usage_error():
    with pytest.raises(usage.UsageError):
        tap.Options().parseOptions(["--rtmp-port", "99999"])


def test_config_error_is_one_line_and_exit(tmp_path, capsys):
    path = write_config(tmp_path, "[RTMP]\nport = abc\n")
    with pytest.raises(SystemExit) as e:
        make(["--config", path])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert path in err and "[RTMP]" in err and "port" in err


def test_missing_file_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        make(["--config", str(tmp_path / "nope.cfg")])
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope.cfg" in err


def test_unknown_application_class_is_one_line(tmp_path, capsys):
    path = write_config(tmp_path, CONFIG + "[NoSuchApplication]\nenabled = yes\nname = x\n")
    with pytest.raises(SystemExit):
        make(["--config", path])
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "NoSuchApplication" in err


def test_a_supervisor_does_not_join_the_workers_of_another_on_their_port():
    """Workers listen with SO_REUSEPORT; a second supervisor of the same user must not slip in beside them."""
    with socket.socket() as worker:
        worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        worker.bind(("127.0.0.1", 0))
        worker.listen()
        port = worker.getsockname()[1]
        with pytest.raises(tap.ListenError) as info:
            tap.bind_listener("RTMP", "127.0.0.1", port, 50, "--rtmp-port", reuse_port=True, listen=False)
        assert str(info.value).startswith(f"[RTMP] port = {port}: the port is already in use on 127.0.0.1")
        # a worker of that supervisor (reuse_port, listening) still joins it, as it must
        tap.bind_listener("RTMP", "127.0.0.1", port, 50, "--rtmp-port", reuse_port=True).close()

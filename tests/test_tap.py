"""twistd wiring: parseOptions -> makeService, as Twisted's own web/test/test_tap.py does it."""
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
port = 1935
[HTTP]
enabled = yes
port = 3000
[EchoApplication]
enabled = yes
name = echotest
"""


def make(argv):
    options = tap.Options()
    options.parseOptions(argv)
    return tap.makeService(options, reactor=Clock())


def test_options_and_overrides_reach_the_listeners(tmp_path):
    top = make(["--config", write_config(tmp_path, CONFIG), "--rtmp-port", "19350", "--http-port", "18080"])
    rtmp = top.getServiceNamed("rtmp")
    http = top.getServiceNamed("http")
    assert rtmp.args[0] == 19350
    assert http.args[0] == 18080
    factory = rtmp.args[1]
    assert isinstance(factory.applications["echotest"], EchoApplication)


def test_http_disabled_means_no_http_listener(tmp_path):
    top = make(["--config", write_config(tmp_path, CONFIG.replace("enabled = yes\nport = 3000", "enabled = no"))])
    with pytest.raises(KeyError):
        top.getServiceNamed("http")


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

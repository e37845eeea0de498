"""Applications from fmspy.cfg: built-ins, third-party classes found by entry point, clear errors."""
import os

import pytest

from fmspy_gateway.app.application import ConnectRedirected, ConnectRejected
from fmspy_gateway.app.chat import ChatApplication
from fmspy_gateway.app.echo import EchoApplication
from fmspy_gateway.app.registry import UnknownApplication, build_applications
from fmspy_gateway.config import load_config

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "hello_app")


def config(tmp_path, text):
    path = tmp_path / "fmspy.cfg"
    path.write_text("[RTMP]\n[HTTP]\n" + text)
    return load_config(str(path))


def install_example_entry_point(tmp_path, monkeypatch):
    """What `pip install examples/hello_app` leaves behind: a dist-info with the entry point."""
    dist = tmp_path / "site" / "hello_app-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hello-app\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(
        "[fmspy_gateway.applications]\nHelloApplication = hello_app:HelloApplication\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.syspath_prepend(EXAMPLE)


def test_builtins_share_one_directory(tmp_path):
    apps = build_applications(config(tmp_path, "[EchoApplication]\nenabled = yes\nname = echotest\n"
                                               "[ChatApplication]\nenabled = yes\nname = chat\n"
                                               "[ChatApplication:second]\nenabled = yes\nname = chat2\n"
                                               "[EchoApplication:off]\nenabled = no\nname = off\n"))
    assert sorted(apps) == ["chat", "chat2", "echotest"]
    assert isinstance(apps["echotest"], EchoApplication) and isinstance(apps["chat2"], ChatApplication)
    assert apps["chat"].hub is apps["echotest"].hub is apps["chat2"].hub


def test_third_party_application_found_by_entry_point(tmp_path, monkeypatch):
    install_example_entry_point(tmp_path, monkeypatch)
    apps = build_applications(config(tmp_path, "[HelloApplication]\nenabled = yes\nname = hello\ngreeting = Hi\n"))
    hello = apps["hello"]
    assert type(hello).__name__ == "HelloApplication"
    assert hello.hello(None, "you") == "Hi, you!"
    assert hello.on_connect(None) is True
    with pytest.raises(ConnectRejected):
        hello.on_connect(None, "wrong")
    with pytest.raises(ConnectRedirected):
        hello.on_connect(None, "elsewhere")
    assert hello.find_method("hello") is not None and hello.find_method("on_connect") is None


def test_unknown_class_is_one_clear_line(tmp_path):
    with pytest.raises(UnknownApplication) as e:
        build_applications(config(tmp_path, "[NoSuchApplication:x]\nenabled = yes\nname = x\n"))
    message = str(e.value)
    assert "[NoSuchApplication:x]" in message and "fmspy.cfg" in message and "\n" not in message


def test_disabled_unknown_class_is_ignored(tmp_path):
    assert build_applications(config(tmp_path, "[NoSuchApplication]\nenabled = no\nname = x\n")) == {}

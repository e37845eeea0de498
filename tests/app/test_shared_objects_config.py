"""The shared object options of every application section, parsed once at start."""
import pytest

from fmspy_gateway.app.application import Application, Services
from fmspy_gateway.app.chat import ChatApplication
from fmspy_gateway.app.hub import LocalHub
from fmspy_gateway.app.shared_objects import SharedObjectLimits, SharedObjectSettings
from fmspy_gateway.config import ConfigError, load_config


def section(tmp_path, text, cls="Application"):
    path = tmp_path / "fmspy.cfg"
    path.write_text(f"[RTMP]\n[{cls}:one]\nenabled = yes\nname = app\n{text}")
    return load_config(str(path)).applications[0]


def test_defaults_without_options(tmp_path):
    parsed = Application.parse_config(section(tmp_path, ""))
    settings = parsed.settings_of(SharedObjectSettings)
    assert settings.directory is None and settings.limits == SharedObjectLimits()


def test_options_are_parsed_and_the_directory_is_relative_to_its_file(tmp_path):
    parsed = ChatApplication.parse_config(section(
        tmp_path, "sharedObjectDir = objects\nmaxSharedObjectBytes = 64K\nmaxSharedObjects = 5\n"
                  "maxSharedObjectListeners = 7\n", "ChatApplication"))
    settings = parsed.settings_of(SharedObjectSettings)
    assert settings.directory == str(tmp_path / "objects")
    assert settings.limits == SharedObjectLimits(max_bytes=65536, max_objects=5, max_listeners=7)


@pytest.mark.parametrize("text, expected", [
    ("maxSharedObjects = 0", "maxSharedObjects = '0': expected a positive number of objects"),
    ("maxSharedObjectBytes = lots", "maxSharedObjectBytes = 'lots': expected a byte count"),
    ("maxSharedObjectListeners = -1", "maxSharedObjectListeners = '-1': expected a positive number"),
])
def test_a_bad_value_is_one_line_naming_the_option(tmp_path, text, expected):
    with pytest.raises(ConfigError) as info:
        Application.parse_config(section(tmp_path, text + "\n"))
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_the_directory_is_created_and_an_unusable_one_is_one_line_at_start(tmp_path):
    hub = LocalHub()
    Application.from_config(section(tmp_path, "sharedObjectDir = objects\n"), Services(hub))
    assert (tmp_path / "objects").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError) as info:
        Application.from_config(section(tmp_path, "sharedObjectDir = file\n"), Services(hub))
    message = str(info.value)
    assert "sharedObjectDir = file" in message and "is not a directory" in message and "\n" not in message
    assert "leave sharedObjectDir empty to disable persistent shared objects" in message

"""Application options declared as data (config.option / from_section), parsed once by parse_application."""
import os
from dataclasses import FrozenInstanceError, dataclass
from typing import Optional

import pytest

from fmspy_gateway.app.application import Application, NoSettings, StreamingSettings
from fmspy_gateway.app.chat import ChatApplication, ChatSettings
from fmspy_gateway.app.echo import EchoApplication
from fmspy_gateway.app.live_application import LiveApplication
from fmspy_gateway.app.recording import RecordPolicy
from fmspy_gateway.config import (
    ApplicationConfig, ConfigError, _parse_positive_int, declared_options, from_section, load_config, option,
    parse_application, parse_settings)


@dataclass(frozen=True)
class ShopSettings:
    section: str = from_section("section")
    source: str = from_section("source")
    backend: str = option("backend", str, "a URL")                         # required
    room: str = option("room", str, "a room name", default_from=lambda app: app.name + "-lobby")
    retries: int = option("retries", _parse_positive_int, "a positive integer", 3)
    catalog: Optional[str] = option("catalog", str, "a file name", None, path=True)

    def validate(self, app):
        if self.retries > 5 and self.catalog is None:
            raise ConfigError(f"{app.source}: [{app.section}] retries = {self.retries} needs catalog",
                              file=app.source, section=app.section, option="retries")


def section(tmp_path, text, name="fmspy.cfg"):
    path = tmp_path / name
    path.write_text(f"[RTMP]\n[ShopApplication:one]\nenabled = yes\nname = shop\n{text}")
    return load_config(str(path)).applications[0]


def one_line(error):
    message = str(error)
    assert "\n" not in message and message == message.strip(), message
    return message


def test_fields_are_read_from_their_options(tmp_path):
    app = section(tmp_path, "backend = http://b/\nretries = 2\ncatalog = data/catalog.json\n")
    settings = parse_settings(app, ShopSettings)
    assert settings == ShopSettings(section="ShopApplication:one", source=str(tmp_path / "fmspy.cfg"),
                                    backend="http://b/", retries=2, room="shop-lobby",
                                    catalog=str(tmp_path / "data" / "catalog.json"))
    with pytest.raises(FrozenInstanceError):
        settings.retries = 4
    assert declared_options(ShopSettings) == ("backend", "room", "retries", "catalog")


def test_defaults_and_empty_paths(tmp_path):
    settings = parse_settings(section(tmp_path, "backend = x\ncatalog =\n"), ShopSettings)
    assert (settings.retries, settings.room, settings.catalog) == (3, "shop-lobby", None)


def test_a_path_is_relative_to_the_file_that_set_it(tmp_path):
    (tmp_path / "etc").mkdir()
    base = section(tmp_path, "backend = x\n")
    override = tmp_path / "etc" / "fmspy.cfg"
    override.write_text("[ShopApplication:one]\ncatalog = c.json\n")
    from fmspy_gateway.config import load_config as load
    layered = load(search_path=[str(tmp_path / "fmspy.cfg"), str(override)]).applications[0]
    assert parse_settings(layered, ShopSettings).catalog == str(tmp_path / "etc" / "c.json")
    assert parse_settings(base, ShopSettings).catalog is None


def test_bad_and_missing_values_are_one_line_errors(tmp_path):
    cfg = str(tmp_path / "fmspy.cfg")
    with pytest.raises(ConfigError) as raised:
        parse_settings(section(tmp_path, "backend = x\nretries = 0\n"), ShopSettings)
    assert one_line(raised.value) == f"{cfg}: [ShopApplication:one] retries = '0': expected a positive integer"
    assert (raised.value.file, raised.value.section, raised.value.option) == (cfg, "ShopApplication:one", "retries")
    with pytest.raises(ConfigError) as raised:
        parse_settings(section(tmp_path, ""), ShopSettings)
    assert one_line(raised.value) == f"{cfg}: [ShopApplication:one] backend is missing: expected a URL"


def test_validate_checks_options_together(tmp_path):
    with pytest.raises(ConfigError) as raised:
        parse_settings(section(tmp_path, "backend = x\nretries = 9\n"), ShopSettings)
    assert "retries = 9 needs catalog" in one_line(raised.value)


def test_strict_refuses_unknown_options_with_a_suggestion(tmp_path):
    app = section(tmp_path, "backend = x\nretrys = 2\n")
    with pytest.raises(ConfigError) as raised:
        parse_application(app, (ShopSettings, StreamingSettings))
    message = one_line(raised.value)
    assert message.startswith(f"{tmp_path / 'fmspy.cfg'}: [ShopApplication:one] retrys = '2': expected one of "
                              "backend, room, retries, catalog, recordDir, record")
    assert "(did you mean retries?" in message and raised.value.option == "retrys"


def test_not_strict_keeps_the_rest_raw(tmp_path):
    app = parse_application(section(tmp_path, "greeting = Hi\nrecord = off\n"), (StreamingSettings,), strict=False)
    assert dict(app.options) == {"greeting": "Hi", "record": "off"}
    assert app.settings_of(StreamingSettings) == StreamingSettings()
    with pytest.raises(LookupError):
        app.settings_of(ShopSettings)


def test_every_application_has_the_streaming_options(tmp_path):
    app = section(tmp_path, "recordDir = rec\nrecord = video\nrecordMaxSize = 1M\n")
    streaming = Application.parse_config(app).settings_of(StreamingSettings)
    assert streaming.record_dir == str(tmp_path / "rec")
    assert streaming.policy == RecordPolicy("video", "", 1024 * 1024, 0.0)


def test_a_class_without_settings_gets_its_options_raw(tmp_path):
    class Plain(Application):
        pass
    built = Plain.from_config(section(tmp_path, "greeting = Hi\n"), _services())
    assert built.options == {"greeting": "Hi"} and built.settings is None


def test_a_class_with_settings_receives_them_frozen(tmp_path):
    class Shop(Application):
        Settings = ShopSettings
    built = Shop.from_config(section(tmp_path, "backend = http://b/\n"), _services())
    assert isinstance(built.settings, ShopSettings) and built.settings.backend == "http://b/"
    with pytest.raises(ConfigError) as raised:
        Shop.from_config(section(tmp_path, "backend = x\ngreeting = Hi\n"), _services())
    assert raised.value.option == "greeting"


@pytest.mark.parametrize("cls", [LiveApplication, EchoApplication, ChatApplication])
def test_the_built_in_applications_refuse_an_unknown_option(tmp_path, cls):
    """They declare their options (``NoSettings``: none of their own; chat its ``maxNameLength``), and so every
    section of theirs is strict."""
    assert cls.Settings is (ChatSettings if cls is ChatApplication else NoSettings)
    path = tmp_path / "fmspy.cfg"
    path.write_text(f"[RTMP]\n[{cls.__name__}]\nenabled = yes\nname = x\nrecordDri = rec\n")
    with pytest.raises(ConfigError) as raised:
        cls.parse_config(load_config(str(path)).applications[0])
    assert f"[{cls.__name__}] recordDri = 'rec'" in one_line(raised.value)
    assert "(did you mean recordDir?" in one_line(raised.value)
    path.write_text(f"[RTMP]\n[{cls.__name__}]\nenabled = yes\nname = x\nrecordDir = rec\n")
    built = cls.from_config(load_config(str(path)).applications[0], _services())
    assert built.settings == cls.Settings() and built.record_dir == str(tmp_path / "rec")


def test_from_section_knows_its_facts():
    with pytest.raises(ValueError):
        from_section("colour")


def _services():
    from twisted.internet.task import Clock
    from fmspy_gateway.app.application import Services
    from fmspy_gateway.app.hub import LocalHub
    from fmspy_gateway.config import RTMPConfig
    return Services(LocalHub(), clock=Clock(), rtmp=RTMPConfig())


def test_an_unparsed_section_built_by_hand_still_works(tmp_path):
    raw = ApplicationConfig(class_name="LiveApplication", enabled=True, name="live",
                            options={"recordDir": "rec"}, source=str(tmp_path / "x.cfg"))
    live = LiveApplication.from_config(raw, _services())
    assert live.record_dir == os.path.join(str(tmp_path), "rec") and os.path.isdir(live.record_dir)

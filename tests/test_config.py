"""fmspy.cfg -> Config: defaults, every option, layering, and one-line errors that say what to fix."""
import dataclasses
import os

import pytest

from fmspy_gateway.config import (
    DEFAULT_SEARCH_PATH, ApplicationConfig, Config, ConfigError, HTTPConfig, RTMPConfig, load_config,
    with_overrides)
from fmspy_gateway.rtmp.limits import Limits

BUNDLED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fmspy.cfg")


def write(tmp_path, text, name="fmspy.cfg"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def load_error(*args, **kwargs):
    """The ConfigError load_config raises; its message must be one line."""
    with pytest.raises(ConfigError) as info:
        load_config(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    assert "Traceback" not in message and "NoSectionError" not in message
    return info.value


def assert_names(error, file, section, option=None):
    message = str(error)
    assert message.startswith(f"{file}: "), message
    assert f"[{section}]" in message, message
    assert "expected" in message, message
    assert (error.file, error.section) == (file, section)
    if option is not None:
        assert f"] {option}" in message, message
        assert error.option == option


# --- defaults and every option ----------------------------------------------

def test_empty_rtmp_section_gives_documented_defaults(tmp_path):
    path = write(tmp_path, "[RTMP]\n")
    config = load_config(path)
    assert config.rtmp == RTMPConfig(port=1935, interface="", backlog=50, handshake_timeout=30,
                                     ping_interval=60, keepalive_timeout=180, limits=Limits())
    assert config.http == HTTPConfig(enabled=False, port=3000, interface="127.0.0.1", examples_enabled=False,
                                     push_token=None)
    assert config.applications == ()
    assert config.enabled_applications() == ()
    assert config.files == (path,)


def test_every_option_is_parsed(tmp_path):
    path = write(tmp_path, """
[RTMP]
port = 2000
interface = 10.0.0.1
backlog = 7
handshakeTimeout = 2.5
pingInterval = 11
keepAliveTimeout = 12.5
maxMessageSize = 1000
maxChunkSize = 64K
maxChunkStreams = 9
maxBufferedBytes = 2M

[HTTP]
enabled = yes
port = 8080
interface = 0.0.0.0
examples-enabled = true
push-token = s3cr%t;x

[GatewayApplication]
enabled = on
name = shop
backend = http://backend/rpc
timeout = 2.5
""")
    config = load_config(path)
    assert config.rtmp == RTMPConfig(
        port=2000, interface="10.0.0.1", backlog=7, handshake_timeout=2.5, ping_interval=11,
        keepalive_timeout=12.5,
        limits=Limits(max_message_size=1000, max_chunk_size=65536, max_chunk_streams=9,
                      max_buffered_bytes=2 * 1024 * 1024))
    assert config.http == HTTPConfig(enabled=True, port=8080, interface="0.0.0.0", examples_enabled=True,
                                     push_token="s3cr%t;x")  # no interpolation, ';' without space kept
    (app,) = config.applications
    assert (app.class_name, app.label, app.section, app.enabled, app.name) == (
        "GatewayApplication", None, "GatewayApplication", True, "shop")
    assert dict(app.options) == {"backend": "http://backend/rpc", "timeout": "2.5"}
    assert app.source == path
    assert config.enabled_applications() == (app,)


@pytest.mark.parametrize("text, expected", [
    ("65536", 65536), ("64K", 65536), ("64k", 65536), ("4M", 4 * 1024 * 1024), ("1 M", 1024 * 1024),
    ("16M", 16 * 1024 * 1024)])
def test_sizes_accept_binary_suffixes(tmp_path, text, expected):
    config = load_config(write(tmp_path, f"[RTMP]\nmaxMessageSize = {text}\n"))
    assert config.rtmp.limits.max_message_size == expected


@pytest.mark.parametrize("text, expected", [
    ("yes", True), ("No", False), ("true", True), ("off", False), ("ON", True), ("1", True), ("0", False)])
def test_booleans_as_configparser_spells_them(tmp_path, text, expected):
    config = load_config(write(tmp_path, f"[RTMP]\n[HTTP]\nenabled = {text}\n"))
    assert config.http.enabled is expected


def test_empty_push_token_is_none_and_empty_interface_means_all(tmp_path):
    config = load_config(write(tmp_path, "[RTMP]\ninterface =\n[HTTP]\npush-token =\ninterface =\n"))
    assert config.http.push_token is None
    assert config.rtmp.interface == "" and config.http.interface == ""


def test_push_api_limits(tmp_path):
    config = load_config(write(tmp_path, "[RTMP]\n[HTTP]\npush-max-body = 64K\npush-max-call-timeout = 2.5\n"))
    assert (config.http.push_max_body, config.http.push_max_call_timeout) == (64 * 1024, 2.5)
    defaults = load_config(write(tmp_path, "[RTMP]\n[HTTP]\n")).http
    assert (defaults.push_max_body, defaults.push_max_call_timeout) == (1024 * 1024, 300.0)
    for bad in ("0", "-1", "inf", "soon"):
        with pytest.raises(ConfigError, match="push-max-call-timeout"):
            load_config(write(tmp_path, f"[RTMP]\n[HTTP]\npush-max-call-timeout = {bad}\n"))


def test_inline_and_full_line_comments(tmp_path):
    config = load_config(write(tmp_path, """
# a comment
; another
[RTMP]   ; the core
port = 1936 ; not the standard port
backlog = 5   # hash comments too
[ShopApplication]
enabled = yes ; on
name = shop ; rtmp://host/shop
url = http://backend/rpc#fragment
mode = a;b
"""))
    assert config.rtmp.port == 1936 and config.rtmp.backlog == 5
    (app,) = config.applications
    assert app.name == "shop"
    assert dict(app.options) == {"url": "http://backend/rpc#fragment", "mode": "a;b"}


def test_config_is_frozen_and_options_read_only(tmp_path):
    config = load_config(write(tmp_path, "[RTMP]\n[A]\nenabled = yes\nname = a\nx = 1\n"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.rtmp.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.applications[0].options["x"] = "2"  # type: ignore[index]
    hash(config)


# --- where files are found ----------------------------------------------------

def test_later_files_override_earlier_ones_option_by_option(tmp_path):
    first = write(tmp_path, """
[RTMP]
port = 2000
backlog = 10
[HTTP]
enabled = yes
[EchoApplication]
enabled = yes
name = echo
greeting = hello
""", "first.cfg")
    second = write(tmp_path, """
[RTMP]
port = 3000
[EchoApplication]
name = echo2
[ChatApplication]
enabled = yes
name = chat
""", "second.cfg")
    config = load_config(search_path=[first, str(tmp_path / "missing.cfg"), second])
    assert config.files == (first, second)
    assert (config.rtmp.port, config.rtmp.backlog) == (3000, 10)
    assert config.http.enabled is True
    echo, chat = config.applications
    assert (echo.section, echo.enabled, echo.name, dict(echo.options)) == (
        "EchoApplication", True, "echo2", {"greeting": "hello"})
    assert echo.source == second
    assert echo.option_sources["greeting"] == first
    assert chat.name == "chat"


def test_error_names_the_file_the_bad_value_came_from(tmp_path):
    first = write(tmp_path, "[RTMP]\nbacklog = many\n", "first.cfg")
    second = write(tmp_path, "[RTMP]\nport = 2000\n", "second.cfg")
    assert_names(load_error(search_path=[first, second]), first, "RTMP", "backlog")

    fixed = write(tmp_path, "[RTMP]\nbacklog = 5\n", "fixed.cfg")
    bad_later = write(tmp_path, "[RTMP]\nport = abc\n", "later.cfg")
    assert_names(load_error(search_path=[fixed, bad_later]), bad_later, "RTMP", "port")


def test_a_later_file_can_fix_an_earlier_bad_value(tmp_path):
    first = write(tmp_path, "[RTMP]\nport = abc\n", "first.cfg")
    second = write(tmp_path, "[RTMP]\nport = 2000\n", "second.cfg")
    assert load_config(search_path=[first, second]).rtmp.port == 2000


def test_keepalive_error_across_files_names_where_each_value_is(tmp_path):
    first = write(tmp_path, "[RTMP]\nkeepAliveTimeout = 100\n", "first.cfg")
    second = write(tmp_path, "[RTMP]\npingInterval = 100\n", "second.cfg")
    error = load_error(search_path=[first, second])
    assert_names(error, first, "RTMP", "keepAliveTimeout")
    assert "pingInterval (100)" in str(error)


def test_same_file_reached_twice_is_read_once(tmp_path):
    path = write(tmp_path, "[RTMP]\n")
    link = tmp_path / "link.cfg"
    link.symlink_to(path)
    assert load_config(search_path=[path, str(link)]).files == (path,)


def test_relative_search_entries_resolve_against_the_current_directory(tmp_path, monkeypatch):
    write(tmp_path, "[RTMP]\nport = 4000\n")
    monkeypatch.chdir(tmp_path)
    config = load_config(search_path=[os.path.join(os.curdir, "fmspy.cfg")])
    assert config.rtmp.port == 4000
    assert config.files == (str(tmp_path / "fmspy.cfg"),)


def test_default_search_path_is_fmspys_order():
    package_dir = os.path.dirname(os.path.abspath(__import__("fmspy_gateway").__file__))
    assert DEFAULT_SEARCH_PATH == (
        os.path.join(package_dir, "fmspy.cfg"), "/etc/fmspy.cfg", "/usr/local/etc/fmspy.cfg",
        os.path.join(os.curdir, "fmspy.cfg"))


def test_explicit_path_reads_only_that_file(tmp_path):
    other = write(tmp_path, "[RTMP]\nport = 2000\nbacklog = 3\n", "other.cfg")
    chosen = write(tmp_path, "[RTMP]\nport = 3000\n", "chosen.cfg")
    config = load_config(chosen, search_path=[other])
    assert config.files == (chosen,)
    assert (config.rtmp.port, config.rtmp.backlog) == (3000, 50)


def test_explicit_path_must_exist(tmp_path):
    missing = str(tmp_path / "nope.cfg")
    error = load_error(missing)
    assert str(error).startswith(f"{missing}: ") and error.file == missing


def test_no_file_found_says_where_it_looked(tmp_path):
    places = [str(tmp_path / "a.cfg"), str(tmp_path / "b.cfg")]
    message = str(load_error(search_path=places))
    assert "no fmspy.cfg found" in message
    assert message.index(places[0]) < message.index(places[1])


def test_missing_rtmp_section_is_a_friendly_line(tmp_path):
    path = write(tmp_path, "[HTTP]\nenabled = yes\n")
    nowhere = str(tmp_path / "nowhere.cfg")
    error = load_error(search_path=[nowhere, path])
    message = str(error)
    assert "no [RTMP] section" in message
    assert path in message and nowhere in message  # what was read, and where it looks
    assert error.section == "RTMP"

    explicit = str(load_error(path))
    assert "no [RTMP] section" in explicit and path in explicit


# --- bad values ---------------------------------------------------------------

@pytest.mark.parametrize("section, option, value", [
    ("RTMP", "port", "abc"), ("RTMP", "port", "65536"), ("RTMP", "port", "-1"), ("RTMP", "port", "1.5"),
    ("RTMP", "port", ""), ("RTMP", "backlog", "0"), ("RTMP", "backlog", "lots"),
    ("RTMP", "handshakeTimeout", "-5"), ("RTMP", "handshakeTimeout", "0"),
    ("RTMP", "handshakeTimeout", "nan"),
    ("RTMP", "pingInterval", "soon"), ("RTMP", "keepAliveTimeout", "inf"),
    ("RTMP", "maxMessageSize", "0"), ("RTMP", "maxMessageSize", "17M"), ("RTMP", "maxMessageSize", "4MB"),
    ("RTMP", "maxChunkSize", "-1"), ("RTMP", "maxChunkSize", "2G"), ("RTMP", "maxChunkStreams", "0"),
    ("RTMP", "maxChunkStreams", "4K"), ("RTMP", "maxBufferedBytes", "big"),
    ("RTMP", "mediaFlushInterval", "-0.1"), ("RTMP", "mediaFlushInterval", "2"),
    ("RTMP", "mediaFlushInterval", "nan"), ("RTMP", "mediaFlushInterval", "soon"),
    ("RTMP", "mergedReads", "often"), ("RTMP", "mergedReadTurns", "0"), ("RTMP", "mergedReadTurns", "257"),
    ("RTMP", "mergedReadTurns", "1.5"), ("RTMP", "maxStreamNameLength", "0"),
    ("RTMP", "maxStreamNameLength", "long"), ("RTMP", "closeLinger", "0"), ("RTMP", "closeLinger", "-2"),
    ("RTMP", "closeLinger", "never"), ("RTMP", "closeLinger", "1e400"), ("RTMP", "keepAliveTimeout", "3e6"),
    ("RTMP", "maxFourCcEntries", "0"), ("RTMP", "maxFourCcEntries", "some"),
    ("HTTP", "close-linger", "0"), ("HTTP", "close-linger", "later"),
    ("HTTP", "enabled", "maybe"), ("HTTP", "port", "http"), ("HTTP", "examples-enabled", "2"),
    ("EchoApplication", "enabled", "sure"), ("EchoApplication", "name", "a/b"),
    ("EchoApplication", "name", "two words"), ("EchoApplication", "name", "app?x=1"),
])
def test_bad_value_is_one_line_naming_file_section_option(tmp_path, section, option, value):
    text = "[RTMP]\n" if section != "RTMP" else ""
    path = write(tmp_path, f"{text}[{section}]\n{option} = {value}\n")
    error = load_error(path)
    assert_names(error, path, section, option)
    assert repr(value) in str(error)


@pytest.mark.parametrize("value, seconds", [("0", 0.0), ("0.1", 0.1), ("1", 1.0)])
def test_media_flush_interval_is_zero_to_a_second(tmp_path, value, seconds):
    assert RTMPConfig().media_flush_interval == 0
    path = write(tmp_path, f"[RTMP]\nmediaFlushInterval = {value}\n")
    assert load_config(path).rtmp.media_flush_interval == seconds


def test_merged_reads_are_off_by_default_and_need_a_media_flush_interval(tmp_path):
    assert RTMPConfig().merged_reads is False
    path = write(tmp_path, "[RTMP]\nmediaFlushInterval = 0.1\nmergedReads = yes\n")
    assert load_config(path).rtmp.merged_reads is True
    path = write(tmp_path, "[RTMP]\nmergedReads = yes\n")
    error = load_error(path)
    assert_names(error, path, "RTMP", "mergedReads")
    assert "mediaFlushInterval" in str(error) and "\n" not in str(error)


@pytest.mark.parametrize("value, turns", [("1", 1), ("64", 64), ("256", 256)])
def test_merged_read_turns_are_16_by_default_and_1_to_256(tmp_path, value, turns):
    assert RTMPConfig().merged_read_turns == 16
    path = write(tmp_path, f"[RTMP]\nmediaFlushInterval = 0.1\nmergedReads = yes\nmergedReadTurns = {value}\n")
    assert load_config(path).rtmp.merged_read_turns == turns


def test_stream_name_length_and_close_linger_have_their_documented_defaults_and_can_be_set(tmp_path):
    assert (RTMPConfig().max_stream_name_length, RTMPConfig().close_linger) == (256, 2.0)
    path = write(tmp_path, "[RTMP]\nmaxStreamNameLength = 1024\ncloseLinger = 0.5\n")
    rtmp = load_config(path).rtmp
    assert (rtmp.max_stream_name_length, rtmp.close_linger) == (1024, 0.5)


def test_the_http_close_linger_is_2_seconds_by_default_and_can_be_set(tmp_path):
    assert HTTPConfig().close_linger == 2.0
    path = write(tmp_path, "[RTMP]\n[HTTP]\nclose-linger = 0.5\n")
    assert load_config(path).http.close_linger == 0.5


def test_fourcc_entries_are_64_by_default_and_can_be_set(tmp_path):
    assert RTMPConfig().max_fourcc_entries == 64
    path = write(tmp_path, "[RTMP]\nmaxFourCcEntries = 8\n")
    assert load_config(path).rtmp.max_fourcc_entries == 8


def test_port_message_matches_the_documented_shape(tmp_path):
    path = write(tmp_path, "[RTMP]\nport = abc\n")
    assert str(load_error(path)) == f"{path}: [RTMP] port = 'abc': expected an integer port 0-65535"


@pytest.mark.parametrize("ping, keepalive", [("60", "60"), ("60", "30"), ("10", "9.5")])
def test_keepalive_must_exceed_ping_interval(tmp_path, ping, keepalive):
    path = write(tmp_path, f"[RTMP]\npingInterval = {ping}\nkeepAliveTimeout = {keepalive}\n")
    error = load_error(path)
    assert_names(error, path, "RTMP", "keepAliveTimeout")
    assert "pingInterval" in str(error)


def test_ping_interval_above_default_keepalive_blames_ping_interval(tmp_path):
    path = write(tmp_path, "[RTMP]\npingInterval = 200\n")
    error = load_error(path)
    assert_names(error, path, "RTMP", "pingInterval")
    assert "keepAliveTimeout (180" in str(error)


def test_buffer_must_hold_the_largest_message(tmp_path):
    path = write(tmp_path, "[RTMP]\nmaxMessageSize = 2M\nmaxBufferedBytes = 1M\n")
    assert_names(load_error(path), path, "RTMP", "maxBufferedBytes")
    assert load_config(write(tmp_path, "[RTMP]\nmaxMessageSize = 1M\nmaxBufferedBytes = 1M\n", "ok.cfg"))


def test_unknown_option_in_a_core_section_suggests_the_right_spelling(tmp_path):
    path = write(tmp_path, "[RTMP]\nkeepalivetimeout = 300\n")  # FMSPy lower-cased option names
    error = load_error(path)
    assert_names(error, path, "RTMP", "keepalivetimeout")
    assert "did you mean keepAliveTimeout?" in str(error)

    path = write(tmp_path, "[RTMP]\n[HTTP]\nexamples_enabled = yes\n", "http.cfg")
    error = load_error(path)
    assert_names(error, path, "HTTP", "examples_enabled")
    assert "examples-enabled" in str(error)


@pytest.mark.parametrize("text, line", [
    ("[RTMP]\nport = 1\nport = 2\n", "line 3"),
    ("[RTMP]\n[EchoApplication]\n[RTMP]\n", "line 3"),
    ("[RTMP]\nport\n", "line 2"),
    ("port = 1\n[RTMP]\n", "line 1"),
])
def test_syntax_errors_are_one_line_with_file_and_line(tmp_path, text, line):
    path = write(tmp_path, text)
    message = str(load_error(path))
    assert message.startswith(f"{path}: {line}: ") and "expected" in message


def test_duplicate_option_names_section_and_option(tmp_path):
    path = write(tmp_path, "[RTMP]\nport = 1\nport = 2\n")
    error = load_error(path)
    assert (error.file, error.section, error.option) == (path, "RTMP", "port")
    assert "[RTMP] port" in str(error)


def test_default_section_is_refused(tmp_path):
    path = write(tmp_path, "[DEFAULT]\nenabled = yes\n[RTMP]\n")
    assert_names(load_error(path), path, "DEFAULT")


def test_unreadable_bytes_are_a_config_error(tmp_path):
    path = tmp_path / "fmspy.cfg"
    path.write_bytes(b"[RTMP]\nport = \xff\xfe\n")
    assert str(load_error(str(path))).startswith(f"{path}: ")


def test_a_directory_is_not_a_config_file(tmp_path):
    assert str(load_error(str(tmp_path))).startswith(f"{tmp_path}: ")


# --- application sections -----------------------------------------------------

def test_labelled_sections_configure_further_instances(tmp_path):
    path = write(tmp_path, """
[RTMP]
[GatewayApplication]
enabled = yes
name = main
[GatewayApplication:shop]
enabled = yes
name = shop
backend = http://shop/rpc
[GatewayApplication:old]
name = old
""")
    config = load_config(path)
    assert [(a.class_name, a.label, a.section, a.name, a.enabled) for a in config.applications] == [
        ("GatewayApplication", None, "GatewayApplication", "main", True),
        ("GatewayApplication", "shop", "GatewayApplication:shop", "shop", True),
        ("GatewayApplication", "old", "GatewayApplication:old", "old", False),
    ]
    assert [a.name for a in config.enabled_applications()] == ["main", "shop"]


def test_applications_are_disabled_unless_enabled(tmp_path):
    config = load_config(write(tmp_path, "[RTMP]\n[ChatApplication]\nname = chat\n[Other]\n"))
    chat, other = config.applications
    assert (chat.enabled, chat.name) == (False, "chat")
    assert (other.enabled, other.name) == (False, None)
    assert config.enabled_applications() == ()


@pytest.mark.parametrize("header", ["[Echo Application]", "[Echo:]", "[:label]", "[Echo:a b]", "[1Echo]",
                                    "[rtmp]", "[Http]"])
def test_bad_section_names(tmp_path, header):
    path = write(tmp_path, f"[RTMP]\n{header}\nenabled = yes\nname = x\n")
    assert_names(load_error(path), path, header[1:-1])


def test_enabled_application_needs_a_name(tmp_path):
    path = write(tmp_path, "[RTMP]\n[EchoApplication]\nenabled = yes\n")
    assert_names(load_error(path), path, "EchoApplication", "name")


def test_wrongly_cased_enabled_is_not_silently_an_app_option(tmp_path):
    path = write(tmp_path, "[RTMP]\n[EchoApplication]\nEnabled = yes\nname = echo\n")
    assert_names(load_error(path), path, "EchoApplication", "Enabled")


def test_two_enabled_applications_cannot_share_a_name(tmp_path):
    path = write(tmp_path, """
[RTMP]
[EchoApplication]
enabled = yes
name = same
[ChatApplication:b]
enabled = yes
name = same
""")
    error = load_error(path)
    assert_names(error, path, "ChatApplication:b", "name")
    assert "[EchoApplication]" in str(error)


def test_a_disabled_application_may_reuse_a_name(tmp_path):
    path = write(tmp_path, "[RTMP]\n[A]\nenabled = yes\nname = same\n[B]\nenabled = no\nname = same\n")
    assert [a.section for a in load_config(path).enabled_applications()] == ["A"]


def test_application_getters_type_options(tmp_path):
    path = write(tmp_path, """
[RTMP]
[GatewayApplication]
enabled = yes
name = gw
retries = 3
timeout = 2.5
strict = off
backend = http://backend/rpc
""")
    (app,) = load_config(path).applications
    assert app.get_int("retries", 1) == 3
    assert app.get_int("absent", 7) == 7
    assert app.get_float("timeout", 1.0) == 2.5
    assert app.get_float("retries") == 3.0
    assert app.get_bool("strict", True) is False
    assert app.get_bool("absent", True) is True
    assert app.get_str("backend") == "http://backend/rpc"
    assert app.get_str("absent", None) is None
    assert app.get_int("retries", minimum=1, maximum=3) == 3


@pytest.mark.parametrize("call", [
    lambda app: app.get_int("timeout", 1),
    lambda app: app.get_float("backend", 1.0),
    lambda app: app.get_bool("retries", False),
    lambda app: app.get_int("retries", minimum=5),
    lambda app: app.get_float("timeout", maximum=1),
    lambda app: app.get_str("missing"),
])
def test_application_getter_errors_name_file_section_option(tmp_path, call):
    first = write(tmp_path, "[RTMP]\n[GatewayApplication:shop]\nretries = 3\ntimeout = 2.5\n", "first.cfg")
    second = write(tmp_path, "[GatewayApplication:shop]\nbackend = http://backend/rpc\n", "second.cfg")
    (app,) = load_config(search_path=[first, second]).applications
    with pytest.raises(ConfigError) as info:
        call(app)
    message = str(info.value)
    assert "\n" not in message and "[GatewayApplication:shop]" in message and "expected" in message
    assert info.value.option in message
    # The error points at the file that holds the option (second.cfg for backend, else first.cfg);
    # a missing option is reported against the section's last file.
    expected_file = second if info.value.option in ("backend", "missing") else first
    assert message.startswith(f"{expected_file}: ")


def test_getters_work_on_a_hand_built_application_config():
    app = ApplicationConfig("EchoApplication", enabled=True, name="echo")
    assert app.get_int("x", 5) == 5 and app.options == {}


# --- command-line overrides ---------------------------------------------------

def test_with_overrides_replaces_only_what_is_given(tmp_path):
    config = load_config(write(tmp_path, "[RTMP]\nport = 2000\n[HTTP]\nport = 3001\n"))
    assert with_overrides(config) == config

    changed = with_overrides(config, rtmp_port=1936, http_port="8080", rtmp_interface="127.0.0.1")
    assert (changed.rtmp.port, changed.rtmp.interface, changed.http.port) == (1936, "127.0.0.1", 8080)
    assert changed.http.enabled is False  # a port alone does not turn HTTP on
    assert changed.rtmp.limits == config.rtmp.limits and changed.files == config.files
    assert (config.rtmp.port, config.http.port) == (2000, 3001)  # the original is untouched
    assert with_overrides(config, rtmp_port=0).rtmp.port == 0


@pytest.mark.parametrize("kwargs, flag", [
    ({"rtmp_port": 70000}, "--rtmp-port"), ({"rtmp_port": "abc"}, "--rtmp-port"),
    ({"http_port": -1}, "--http-port"), ({"http_port": True}, "--http-port")])
def test_with_overrides_rejects_bad_ports(kwargs, flag):
    with pytest.raises(ConfigError) as info:
        with_overrides(Config(), **kwargs)
    message = str(info.value)
    assert message.startswith(f"{flag} ") and "0-65535" in message and "\n" not in message


# --- the bundled file ---------------------------------------------------------

def test_bundled_file_loads_with_defaults_and_enables_echotest():
    config = load_config(BUNDLED)
    assert config.rtmp == RTMPConfig()
    # As FMSPy shipped it: the web server and its examples on, on loopback.
    assert config.http == HTTPConfig(enabled=True, examples_enabled=True)
    echo, live, chat = config.enabled_applications()
    assert (echo.class_name, echo.label, echo.name) == ("EchoApplication", None, "echotest")
    assert (live.class_name, live.label, live.name) == ("LiveApplication", None, "live")
    assert (chat.class_name, chat.label, chat.name) == ("ChatApplication", None, "chat")
    assert dict(echo.options) == {}


def test_a_user_file_layers_over_the_bundled_one(tmp_path):
    user = write(tmp_path, "[RTMP]\nport = 2935\n[EchoApplication]\nenabled = no\n")
    config = load_config(search_path=[BUNDLED, user])
    assert config.rtmp.port == 2935 and config.rtmp.backlog == 50
    assert [a.name for a in config.enabled_applications()] == ["live", "chat"]

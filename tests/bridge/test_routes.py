"""routes.cfg and [GatewayApplication:*] options -> frozen routes; schemas; one-line errors naming what to fix."""
import json
import textwrap

import pytest

from fmspy_gateway.bridge.routes import (
    HOOKS, GatewaySettings, Route, Routes, Schema, gateway_settings, load_routes)
from fmspy_gateway.config import ConfigError, load_config

FMSPY_CFG = """
[RTMP]

[GatewayApplication:shop]
enabled = yes
name = shop                          ; rtmp://host/shop[/room]
endpoint = http://127.0.0.1:8080/rpc ; default backend for its routes
timeout = 5                          ; seconds per backend call
routes = shop                        ; section of routes.cfg (default: name)
"""

ROUTES_CFG = """
[shop]
; <client method> = <backend method> [endpoint=URL] [params=SCHEMA] [result=SCHEMA] [timeout=SECONDS]
getUser  = users.get  params=schemas/getUser.params.json  result=schemas/user.json
cart.add = cart.add   endpoint=http://127.0.0.1:8081/rpc  timeout=2
*        = *          ; anything else: same name, default endpoint (omit to refuse unknown methods)
@connect    = session.open    ; lifecycle hooks
@disconnect = session.close
@enter      = room.enter
@leave      = room.leave
"""

PARAMS_SCHEMA = {
    "type": "array",
    "prefixItems": [{"type": "integer"}, {"type": "object", "properties": {"x": {"type": "integer"}}}],
}
USER_SCHEMA = {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text) if isinstance(text, str) else json.dumps(text), encoding="utf-8")
    return str(path)


def app_config(tmp_path, options="", fmspy=None):
    """The [GatewayApplication:shop] section of an fmspy.cfg in tmp_path, as load_config reads it."""
    text = fmspy if fmspy is not None else f"[RTMP]\n[GatewayApplication:shop]\nenabled = yes\nname = shop\n{options}"
    config = load_config(write(tmp_path / "fmspy.cfg", text))
    return config.applications[0]


def settings_for(tmp_path, routes, options="endpoint = http://127.0.0.1:8080/rpc\n"):
    write(tmp_path / "routes.cfg", routes)
    return gateway_settings(app_config(tmp_path, options))


@pytest.fixture
def example(tmp_path):
    """The issue's example: fmspy.cfg, routes.cfg and both schema files."""
    write(tmp_path / "fmspy.cfg", FMSPY_CFG)
    write(tmp_path / "routes.cfg", ROUTES_CFG)
    write(tmp_path / "schemas" / "getUser.params.json", PARAMS_SCHEMA)
    write(tmp_path / "schemas" / "user.json", USER_SCHEMA)
    settings = gateway_settings(load_config(str(tmp_path / "fmspy.cfg")).applications[0])
    return settings, load_routes(settings)


def one_line_error(call, *args):
    with pytest.raises(ConfigError) as info:
        call(*args)
    message = str(info.value)
    assert "\n" not in message and message == message.strip() and "Traceback" not in message
    return info.value


def assert_names(error, file, section, option=None):
    message = str(error)
    assert message.startswith(f"{file}: "), message
    assert f"[{section}]" in message and "expected" in message, message
    assert (error.file, error.section) == (file, section)
    if option is not None:
        assert f"] {option}" in message, message
        assert error.option == option


# --- the example --------------------------------------------------------------

def test_example_parses_into_routes(example, tmp_path):
    settings, routes = example
    default = "http://127.0.0.1:8080/rpc"
    params = Schema.load(str(tmp_path / "schemas" / "getUser.params.json"))
    user = Schema.load(str(tmp_path / "schemas" / "user.json"))
    assert isinstance(routes, Routes) and routes.section == "shop"
    assert dict(routes.methods) == {
        "getUser": Route("getUser", "users.get", default, 5.0, params_schema=params, result_schema=user),
        "cart.add": Route("cart.add", "cart.add", "http://127.0.0.1:8081/rpc", 2.0),
    }
    assert routes.fallback == Route("*", "*", default, 5.0)
    assert dict(routes.hooks) == {
        "connect": Route("@connect", "session.open", default, 5.0),
        "disconnect": Route("@disconnect", "session.close", default, 5.0),
        "enter": Route("@enter", "room.enter", default, 5.0),
        "leave": Route("@leave", "room.leave", default, 5.0),
    }
    assert routes.methods["getUser"].params_schema.path == str(tmp_path / "schemas" / "getUser.params.json")
    assert routes.methods["getUser"].params_schema.schema == PARAMS_SCHEMA


def test_example_settings(example, tmp_path):
    settings, _ = example
    assert settings == GatewaySettings(
        application="GatewayApplication:shop", source=str(tmp_path / "fmspy.cfg"), routes_section="shop",
        routes_file=str(tmp_path / "routes.cfg"), endpoint="http://127.0.0.1:8080/rpc", timeout=5.0)


def test_routes_are_frozen(example):
    _, routes = example
    with pytest.raises(AttributeError):
        routes.fallback = None
    with pytest.raises(TypeError):
        routes.methods["evil"] = routes.fallback
    with pytest.raises(AttributeError):
        routes.methods["getUser"].endpoint = "http://elsewhere/"


# --- lookup -------------------------------------------------------------------

def test_exact_route_before_fallback(example):
    _, routes = example
    assert routes.route("getUser").backend_name("getUser") == "users.get"
    assert routes.route("cart.add").endpoint == "http://127.0.0.1:8081/rpc"
    fallback = routes.route("orders.list")
    assert fallback is routes.fallback
    assert fallback.backend_name("orders.list") == "orders.list"


def test_method_names_are_case_sensitive(example):
    _, routes = example
    assert routes.route("getuser") is routes.fallback
    assert routes.route("GetUser").backend_name("GetUser") == "GetUser"


def test_fallback_forwards_nothing_a_route_could_not_name(example):
    _, routes = example
    for name in ("", "two words", "tab\tname", "@connect", "rpc.discover"):
        assert routes.route(name) is None, name


def test_without_fallback_unknown_methods_are_refused(tmp_path):
    routes = load_routes(settings_for(tmp_path, "[shop]\ngetUser = users.get\n"))
    assert routes.fallback is None
    assert routes.route("getUser").backend_method == "users.get"
    assert routes.route("getuser") is None
    assert routes.route("other") is None
    assert routes.hook("connect") is None


def test_named_route_with_star_backend_calls_the_same_name(tmp_path):
    routes = load_routes(settings_for(tmp_path, "[shop]\nping = *\n"))
    assert routes.route("ping").backend_name("ping") == "ping"
    assert routes.route("pong") is None


def test_hooks(tmp_path):
    write(tmp_path / "hook.json", {"type": "array"})
    routes = load_routes(settings_for(tmp_path, """
        [shop]
        @connect = session.open context=yes params=hook.json result=hook.json timeout=1
        @publish = stream.publish
        @play = stream.play
        @unpublish = stream.unpublish
        """))
    connect = routes.hook("connect")
    assert (connect.client_method, connect.backend_method, connect.context, connect.timeout) == (
        "@connect", "session.open", True, 1.0)
    assert connect.params_schema is connect.result_schema  # one file, loaded once
    assert connect.params_schema.path == str(tmp_path / "hook.json")
    assert {name: route.backend_method for name, route in routes.hooks.items()} == {
        "connect": "session.open", "publish": "stream.publish", "play": "stream.play",
        "unpublish": "stream.unpublish"}
    assert routes.hook("disconnect") is None
    assert routes.methods == {} and routes.fallback is None
    assert routes.route("@connect") is None  # a hook is not callable by clients
    assert set(HOOKS) == {"connect", "disconnect", "enter", "leave", "publish", "play", "unpublish",
                          "so.use", "so.change", "so.changed"}


def test_route_options_override_the_application_defaults(tmp_path):
    routes = load_routes(settings_for(tmp_path, """
        [shop]
        a = x.a
        b = x.b endpoint=https://backend.example:8443/rpc timeout=0.25 context=yes
        c = x.c context=no
        """, "endpoint = http://127.0.0.1:9000/\ntimeout = 7.5\n"))
    a, b, c = (routes.route(name) for name in "abc")
    assert (a.endpoint, a.timeout, a.context) == ("http://127.0.0.1:9000/", 7.5, False)
    assert (b.endpoint, b.timeout, b.context) == ("https://backend.example:8443/rpc", 0.25, True)
    assert c.context is False


def test_endpoint_may_be_omitted_when_every_route_names_one(tmp_path):
    settings = settings_for(tmp_path, "[shop]\n@connect = s.open endpoint=http://a/\nx = y endpoint=http://b/\n",
                            options="")
    assert settings.endpoint is None
    routes = load_routes(settings)
    assert (routes.hook("connect").endpoint, routes.route("x").endpoint) == ("http://a/", "http://b/")


def test_values_keep_hash_and_semicolon_without_whitespace_before_them(tmp_path):
    routes = load_routes(settings_for(tmp_path, "[shop]\nx = y endpoint=http://h/rpc#frag ; comment\n"))
    assert routes.route("x").endpoint == "http://h/rpc#frag"


def test_a_route_may_continue_on_an_indented_line(tmp_path):
    routes = load_routes(settings_for(tmp_path, "[shop]\nx = y\n    timeout=3\n"))
    assert routes.route("x").timeout == 3.0


# --- files and paths ------------------------------------------------------------

def test_schema_paths_are_relative_to_routes_cfg_not_the_working_directory(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    write(conf / "fmspy.cfg", "[RTMP]\n[GatewayApplication:shop]\nenabled = yes\nname = shop\n"
                              "endpoint = http://127.0.0.1/\nroutes-file = routes/gateway.cfg\n")
    write(conf / "routes" / "gateway.cfg", "[shop]\nx = y params=../schemas/p.json result=/abs.json\n")
    write(conf / "schemas" / "p.json", {"type": "array"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    write(elsewhere / "schemas" / "p.json", {"type": "string"})  # must not be picked up
    settings = gateway_settings(load_config(str(conf / "fmspy.cfg")).applications[0])
    assert settings.routes_file == str(conf / "routes" / "gateway.cfg")
    error = one_line_error(load_routes, settings)  # /abs.json does not exist: reported with its absolute path
    assert str(error).startswith("/abs.json: cannot read")
    write(conf / "routes" / "gateway.cfg", "[shop]\nx = y params=../schemas/p.json\n")
    route = load_routes(settings).route("x")
    assert route.params_schema.path == str(conf / "schemas" / "p.json")
    assert route.params_schema.schema == {"type": "array"}


def test_routes_file_is_relative_to_the_fmspy_cfg_that_set_it(tmp_path):
    first, second = tmp_path / "a" / "fmspy.cfg", tmp_path / "b" / "fmspy.cfg"
    write(first, "[RTMP]\n[GatewayApplication:shop]\nroutes-file = my-routes.cfg\n")
    write(second, "[GatewayApplication:shop]\nenabled = yes\nname = shop\n")
    app = load_config(search_path=[str(first), str(second)]).applications[0]
    settings = gateway_settings(app)
    assert settings.routes_file == str(tmp_path / "a" / "my-routes.cfg")
    assert settings.source == str(second)


def test_default_routes_file_is_beside_the_fmspy_cfg(tmp_path):
    settings = gateway_settings(app_config(tmp_path / "etc"))
    assert settings.routes_file == str(tmp_path / "etc" / "routes.cfg")
    assert settings.routes_section == "shop"


def test_one_schema_file_is_loaded_once(tmp_path):
    write(tmp_path / "s.json", {"type": "array"})
    routes = load_routes(settings_for(tmp_path, "[shop]\na = x params=s.json\nb = y params=./s.json result=s.json\n"))
    a, b = routes.route("a"), routes.route("b")
    assert a.params_schema is b.params_schema is b.result_schema


# --- schemas ------------------------------------------------------------------

def schema(tmp_path, document, name="s.json"):
    return Schema.load(write(tmp_path / name, document))


def test_schema_errors_name_the_json_path(tmp_path):
    params = schema(tmp_path, PARAMS_SCHEMA)
    assert params.errors([42, {"x": 1}]) == []
    assert params.errors([42, {"x": "y"}]) == ["params[1].x: 'y' is not of type 'integer'"]
    assert params.errors(["a", {"x": "y"}]) == ["params[0]: 'a' is not of type 'integer'",
                                                "params[1].x: 'y' is not of type 'integer'"]
    assert params.errors({"not": "a list"}) == ["params: {'not': 'a list'} is not of type 'array'"]


def test_result_errors_use_their_own_root_and_odd_keys_are_quoted(tmp_path):
    user = schema(tmp_path, {"type": "object", "properties": {"first name": {"type": "string"}},
                             "required": ["id"]})
    assert user.errors({"id": 1, "first name": "Ann"}, root="result") == []
    assert user.errors({"first name": 3}, root="result") == [  # in the schema's keyword order
        "result['first name']: 3 is not of type 'string'", "result: 'id' is a required property"]


def test_schema_errors_are_few_and_short(tmp_path):
    items = schema(tmp_path, {"type": "array", "items": {"type": "integer"}})
    assert len(items.errors(["x"] * 1000)) == 10
    assert len(items.errors(["x"] * 1000, limit=3)) == 3
    [line] = schema(tmp_path, {"type": "integer"}, "i.json").errors("z" * 100000)
    assert len(line) <= 300 and line.startswith("params: 'zzz") and line.endswith("...")


@pytest.mark.parametrize("value, valid", [
    ("2024-02-29T10:20:30Z", True),
    ("2024-02-29t10:20:30.123+05:30", True),
    ("2016-12-31T23:59:60Z", True),  # leap second
    ("2023-02-29T10:20:30Z", False),  # not a leap year
    ("2024-02-29T24:00:00Z", False),
    ("2024-02-29T10:20:30", False),  # no offset
    ("2024-02-29", False),
    ("yesterday", False),
    ("2024-02-29T10:20:30+24:00", False),
])
def test_date_time_format_is_checked(tmp_path, value, valid):
    when = schema(tmp_path, {"type": "object", "properties": {"when": {"type": "string", "format": "date-time"}}})
    problems = when.errors({"when": value})
    assert problems == ([] if valid else [f"params.when: {value!r} is not a 'date-time'"])


def test_other_formats_are_checked_too(tmp_path):
    address = schema(tmp_path, {"format": "ipv4"})
    assert address.errors("127.0.0.1") == []
    assert address.errors("127.0.0.256") == ["params: '127.0.0.256' is not a 'ipv4'"]


def test_refs_within_the_file_work(tmp_path):
    refs = schema(tmp_path, {"$defs": {"id": {"type": "integer"}}, "type": "array",
                             "items": {"$ref": "#/$defs/id"}})
    assert refs.errors([1, 2]) == []
    assert refs.errors([1, "2"]) == ["params[1]: '2' is not of type 'integer'"]


def test_older_drafts_follow_their_own_rules(tmp_path):
    draft7 = schema(tmp_path, {"$schema": "http://json-schema.org/draft-07/schema#",
                               "type": "array", "items": [{"type": "integer"}]})
    assert draft7.errors(["x"]) == ["params[0]: 'x' is not of type 'integer'"]


@pytest.mark.parametrize("content, expected", [
    ('{"type": ', "not JSON: line 1 column 10"),
    ("[1, 2]", "a list where a JSON Schema object was expected"),
    ('{"type": "integr"}', "not a valid JSON Schema: $.type:"),
    ('{"minimum": "5"}', "not a valid JSON Schema: $.minimum: '5' is not of type 'number'"),
    ('{"$schema": "http://example.com/my-draft"}', "$schema 'http://example.com/my-draft' is not a JSON Schema draft"),
    ('{"$ref": "other.json"}', "$ref 'other.json' cannot be resolved"),
    ('{"items": {"$ref": "https://example.com/s.json"}}', "$ref 'https://example.com/s.json' cannot be resolved"),
    ('{"$ref": "#/$defs/missing"}', "$ref '#/$defs/missing' cannot be resolved"),
    (b"\xff\xfe{}", "not UTF-8 text"),
])
def test_bad_schema_file_stops_start_up_naming_the_file_and_the_route(tmp_path, content, expected):
    schema_file = tmp_path / "schemas" / "bad.json"
    schema_file.parent.mkdir()
    if isinstance(content, bytes):
        schema_file.write_bytes(content)
    else:
        schema_file.write_text(content)
    settings = settings_for(tmp_path, "[shop]\nok = x\ngetUser = users.get result=schemas/bad.json\n")
    error = one_line_error(load_routes, settings)
    message = str(error)
    assert message.startswith(f"{schema_file}: {expected}"), message
    assert f"result= of [shop] getUser in {tmp_path / 'routes.cfg'}" in message
    assert (error.file, error.section, error.option) == (str(schema_file), "shop", "getUser")


def test_missing_schema_file(tmp_path):
    settings = settings_for(tmp_path, "[shop]\n@enter = room.enter params=nowhere.json\n")
    error = one_line_error(load_routes, settings)
    assert str(error).startswith(f"{tmp_path / 'nowhere.json'}: cannot read: No such file or directory; expected")
    assert "params= of [shop] @enter" in str(error)
    assert (error.section, error.option) == ("shop", "@enter")


# --- routes.cfg errors ----------------------------------------------------------

@pytest.mark.parametrize("line, expected", [
    ("@conect = session.open", "expected a hook among @connect, @disconnect, @enter, @leave, @publish, @play, "
                               "@unpublish, @so.use, @so.change, @so.changed (did you mean connect?"),
    ("get user = users.get", "expected a client method name without whitespace"),
    ("cart.* = cart.*", "expected '*' alone as the fallback route"),
    ("getUser =", "expected the backend method first"),
    ("getUser = endpoint=http://h/", "expected the backend method first"),
    ("getUser = users.*", "expected a backend method name, or '*' alone"),
    ("@connect = *", "expected the backend method to notify of this hook"),
    ("getUser = rpc.discover", "expected a backend method not starting with 'rpc.'"),
    ("rpc.x = *", "expected a backend method not starting with 'rpc.'"),
    ("getUser = users.get params", "expected key=value options after the backend method, not 'params'"),
    ("getUser = users.get timeout=", "expected key=value options after the backend method, not 'timeout='"),
    ("getUser = users.get timout=3", "expected options among endpoint, params, result, timeout, context, "
                                     "not 'timout' (did you mean timeout?"),
    ("getUser = users.get Endpoint=http://h/", "(did you mean endpoint? names are case-sensitive)"),
    ("getUser = users.get timeout=1 timeout=2", "expected timeout= at most once"),
    ("getUser = users.get endpoint=ftp://h/", "expected endpoint= an http:// or https:// URL with a host"),
    ("getUser = users.get endpoint=http:///rpc", "expected endpoint= an http:// or https:// URL"),
    ("getUser = users.get endpoint=http://h:99999/", "expected endpoint= an http:// or https:// URL"),
    ("getUser = users.get endpoint=127.0.0.1:8080", "expected endpoint= an http:// or https:// URL"),
    ("getUser = users.get timeout=0", "expected timeout= a positive number of seconds (at most 2073600), not '0'"),
    ("getUser = users.get timeout=-1", "expected timeout= a positive number of seconds"),
    ("getUser = users.get timeout=inf", "expected timeout= a positive number of seconds"),
    ("getUser = users.get timeout=nan", "expected timeout= a positive number of seconds"),
    ("getUser = users.get timeout=5s", "expected timeout= a positive number of seconds"),
    ("getUser = users.get context=maybe", "expected context= yes or no"),
])
def test_bad_route_is_one_line_naming_file_section_and_method(tmp_path, line, expected):
    settings = settings_for(tmp_path, f"[shop]\nfine = fine.method\n{line}\n")
    error = one_line_error(load_routes, settings)
    option = line.partition("=")[0].strip()
    assert_names(error, str(tmp_path / "routes.cfg"), "shop", option)
    assert expected in str(error), str(error)


def test_route_without_endpoint_names_the_fmspy_cfg_option(tmp_path):
    settings = settings_for(tmp_path, "[shop]\nx = y endpoint=http://h/\n@leave = room.leave\n", options="")
    error = one_line_error(load_routes, settings)
    assert_names(error, str(tmp_path / "fmspy.cfg"), "GatewayApplication:shop", "endpoint")
    assert f"needed by [shop] @leave in {tmp_path / 'routes.cfg'}" in str(error)


def test_missing_routes_file(tmp_path):
    settings = gateway_settings(app_config(tmp_path, "endpoint = http://h/\nroutes-file = nope.cfg\n"))
    error = one_line_error(load_routes, settings)
    assert_names(error, str(tmp_path / "nope.cfg"), "shop")
    assert "no such routes file" in str(error) and "routes-file in [GatewayApplication:shop]" in str(error)


def test_missing_routes_section_suggests_a_close_one(tmp_path):
    settings = settings_for(tmp_path, "[Shop]\nx = y\n[other]\n")
    error = one_line_error(load_routes, settings)
    assert_names(error, str(tmp_path / "routes.cfg"), "shop")
    assert "the file has [Shop], [other] (did you mean Shop?" in str(error)


def test_routes_section_option_picks_another_section(tmp_path):
    settings = settings_for(tmp_path, "[shop]\nx = y\n[v2]\nz = w\n", "endpoint = http://h/\nroutes = v2\n")
    routes = load_routes(settings)
    assert routes.section == "v2" and set(routes.methods) == {"z"}


@pytest.mark.parametrize("text, expected", [
    ("[shop]\nx = a\nx = b\n", "[shop] x: expected each option once per section"),
    ("x = a\n", "expected a [section] header"),
    ("[shop]\njust-a-name\n", "expected 'option = value'"),
    ("[DEFAULT]\nx = y\n[shop]\n", "expected no [DEFAULT] section"),
])
def test_routes_cfg_syntax_errors_are_one_line(tmp_path, text, expected):
    error = one_line_error(load_routes, settings_for(tmp_path, text))
    assert str(error).startswith(f"{tmp_path / 'routes.cfg'}: ") and expected in str(error), str(error)


def test_same_name_in_other_case_is_another_route(tmp_path):
    routes = load_routes(settings_for(tmp_path, "[shop]\ngetUser = a\ngetuser = b\n"))
    assert (routes.route("getUser").backend_method, routes.route("getuser").backend_method) == ("a", "b")


# --- gateway settings -------------------------------------------------------------

def test_gateway_settings_defaults(tmp_path):
    settings = gateway_settings(app_config(tmp_path))
    assert settings == GatewaySettings(
        application="GatewayApplication:shop", source=str(tmp_path / "fmspy.cfg"), routes_section="shop",
        routes_file=str(tmp_path / "routes.cfg"), endpoint=None, timeout=5.0, fail_open=False, max_concurrent=32,
        max_queued=256, breaker_threshold=5, breaker_reset=10.0, max_response_bytes=4 * 1024 * 1024)


def test_gateway_settings_every_option(tmp_path):
    settings = gateway_settings(app_config(tmp_path, """\
endpoint = https://rpc.example/v1
timeout = 2.5
routes = shop-v2
routes-file = /etc/fmspy/routes.cfg
fail-open = yes
max-concurrent = 4
max-queued = 0
breaker-threshold = 1
breaker-reset = 0.5
max-response-bytes = 64K
"""))
    assert settings == GatewaySettings(
        application="GatewayApplication:shop", source=str(tmp_path / "fmspy.cfg"), routes_section="shop-v2",
        routes_file="/etc/fmspy/routes.cfg", endpoint="https://rpc.example/v1", timeout=2.5, fail_open=True,
        max_concurrent=4, max_queued=0, breaker_threshold=1, breaker_reset=0.5, max_response_bytes=65536)
    assert gateway_settings(app_config(tmp_path, "max-response-bytes = 2M\n")).max_response_bytes == 2 * 1024 ** 2


@pytest.mark.parametrize("option, value, expected", [
    ("endpoint", "ftp://h/", "an http:// or https:// URL with a host"),
    ("endpoint", "localhost:8080", "an http:// or https:// URL with a host"),
    ("timeout", "0", "a positive number of seconds"),
    ("timeout", "inf", "a positive number of seconds"),
    ("routes", "", "a section name of routes.cfg"),
    ("fail-open", "maybe", "yes or no"),
    ("max-concurrent", "0", "an integer >= 1"),
    ("max-queued", "-1", "an integer >= 0"),
    ("breaker-threshold", "many", "an integer >= 1"),
    ("breaker-reset", "-3", "a positive number of seconds"),
    ("max-response-bytes", "4X", "a byte count such as 65536, 64K or 4M"),
    ("max-response-bytes", "0", "a byte count"),
])
def test_gateway_settings_bad_values(tmp_path, option, value, expected):
    error = one_line_error(gateway_settings, app_config(tmp_path, f"{option} = {value}\n"))
    assert_names(error, str(tmp_path / "fmspy.cfg"), "GatewayApplication:shop", option)
    assert f"{option} = {value!r}: expected {expected}" in str(error), str(error)


def test_gateway_settings_refuse_unknown_options(tmp_path):
    error = one_line_error(gateway_settings, app_config(tmp_path, "timout = 3\n"))
    assert_names(error, str(tmp_path / "fmspy.cfg"), "GatewayApplication:shop", "timout")
    assert "(did you mean timeout?" in str(error)

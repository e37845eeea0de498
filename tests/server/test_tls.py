"""The RTMPS certificate: one line for each way it can be wrong, reloading, and the twistd wiring."""
import logging
import os

import pytest
from twisted.internet.task import Clock

from fmspy_gateway import tap
from fmspy_gateway.config import RTMPSConfig, load_config
from fmspy_gateway.server.rtmpt import RTMPTResource
from fmspy_gateway.server.tls import ReloadableTLS, TLSSetupError, make_context

from ..e2e.certs import TUNNELS_CONFIG, make_certificate


@pytest.fixture
def cert(tmp_path):
    return make_certificate(str(tmp_path))


def settings(certificate, key, **kwargs):
    return RTMPSConfig(enabled=True, certificate=certificate, key=key, **kwargs)


def error_of(rtmps) -> str:
    with pytest.raises(TLSSetupError) as info:
        make_context(rtmps)
    return str(info.value)


def test_a_good_certificate_makes_a_tls_1_2_context(cert):
    context = make_context(settings(*cert))
    assert context is not None


def test_a_missing_certificate_is_one_line(cert, tmp_path):
    missing = str(tmp_path / "nope.crt")
    assert error_of(settings(missing, cert[1])) == f"[RTMPS] certificate = {missing}: no such file"


def test_a_missing_key_is_one_line(cert, tmp_path):
    missing = str(tmp_path / "nope.key")
    assert error_of(settings(cert[0], missing)) == f"[RTMPS] key = {missing}: no such file"


@pytest.mark.skipif(os.getuid() == 0, reason="root reads any file")
def test_an_unreadable_key_is_one_line(cert):
    os.chmod(cert[1], 0)
    message = error_of(settings(*cert))
    assert message.startswith(f"[RTMPS] key = {cert[1]}: not readable by this user")


def test_a_directory_is_one_line(cert, tmp_path):
    assert error_of(settings(str(tmp_path), cert[1])) == f"[RTMPS] certificate = {tmp_path}: a directory, " \
                                                         "expected a PEM file"


def test_a_file_without_a_certificate_is_one_line(cert):
    # The key file given as the certificate: the commonest slip.
    assert "no PEM certificate in it" in error_of(settings(cert[1], cert[1]))


def test_a_key_that_is_not_a_key(cert):
    assert error_of(settings(cert[0], cert[0])) == f"[RTMPS] key = {cert[0]}: no PEM private key in it"


def test_a_key_of_another_certificate(cert, tmp_path):
    other = make_certificate(str(tmp_path), name="other")
    message = error_of(settings(cert[0], other[1]))
    assert message == f"[RTMPS] key = {other[1]}: does not belong to the certificate {cert[0]}"


def test_the_chain_is_read_too(cert, tmp_path):
    other = make_certificate(str(tmp_path), name="intermediate")
    make_context(settings(*cert, chain=other[0]))
    assert "[RTMPS] chain = /nope: no such file" == error_of(settings(*cert, chain="/nope"))


def test_reload_takes_new_files_and_keeps_the_old_context_when_they_are_bad(cert, tmp_path, caplog):
    tls = ReloadableTLS(settings(*cert))
    first = tls.context
    new = make_certificate(str(tmp_path), name="renewed")
    os.replace(new[0], cert[0])
    os.replace(new[1], cert[1])
    with caplog.at_level(logging.INFO):
        assert tls.reload()
    assert tls.context is not first
    assert "certificate reloaded: CN=renewed" in caplog.text
    second = tls.context
    os.unlink(cert[1])
    with caplog.at_level(logging.INFO):
        assert not tls.reload()
    assert tls.context is second
    assert f"certificate not reloaded, the previous one stays in use: [RTMPS] key = {cert[1]}: no such file" \
        in caplog.text


# -- twistd wiring -------------------------------------------------------------------------

CONFIG = TUNNELS_CONFIG


def make(tmp_path, certificate, key):
    path = tmp_path / "fmspy.cfg"
    path.write_text(CONFIG.format(certificate=certificate, key=key))
    options = tap.Options()
    options.parseOptions(["--config", str(path)])
    return tap.makeService(options, reactor=Clock())


def test_makeservice_serves_rtmps_and_mounts_rtmpt_on_the_http_site(cert, tmp_path):
    top = make(tmp_path, *cert)
    try:
        rtmps = top.getServiceNamed("rtmps")
        factory = rtmps.args[1]
        assert factory.http_site is not None          # RTMPTS on the RTMPS port
        http = top.getServiceNamed("http")
        root = http.args[1].resource
        assert all(isinstance(root.children[name], RTMPTResource) for name in (b"open", b"send", b"idle", b"close"))
        assert top.getServiceNamed("rtmps-certificate-reloader").tls.rtmps.certificate == cert[0]
    finally:
        for name in ("rtmp", "http", "rtmps"):
            top.getServiceNamed(name).stopService()


def test_makeservice_with_a_missing_certificate_prints_one_line(cert, tmp_path, capsys):
    with pytest.raises(SystemExit):
        make(tmp_path, str(tmp_path / "missing.crt"), cert[1])
    err = capsys.readouterr().err
    assert err == f"fmspy-gateway: [RTMPS] certificate = {tmp_path / 'missing.crt'}: no such file\n"


def test_config_requires_certificate_and_key_when_enabled(tmp_path):
    path = tmp_path / "fmspy.cfg"
    path.write_text("[RTMP]\n[RTMPS]\nenabled = yes\ncertificate = /x.crt\n")
    with pytest.raises(Exception) as info:
        load_config(str(path))
    assert "[RTMPS] key is missing" in str(info.value)


def test_config_defaults_and_options(tmp_path):
    path = tmp_path / "fmspy.cfg"
    path.write_text("[RTMP]\n[RTMPT]\nenabled = yes\nmaxSessions = 10\nmaxPendingBytes = 64K\n")
    config = load_config(str(path))
    assert config.rtmps == RTMPSConfig()
    assert config.rtmps.port == 443 and not config.rtmps.tls13
    assert config.rtmpt.enabled and config.rtmpt.max_sessions == 10 and config.rtmpt.max_pending_bytes == 65536
    path.write_text("[RTMP]\n[RTMPT]\nmaxsessions = 10\n")
    with pytest.raises(Exception) as info:
        load_config(str(path))
    assert "maxsessions" in str(info.value)


def test_makeservice_with_the_rtmps_port_in_use_prints_one_line(cert, tmp_path, capsys):
    import socket
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    path = tmp_path / "fmspy.cfg"
    path.write_text(CONFIG.format(certificate=cert[0], key=cert[1]).replace(
        "[RTMPS]\nenabled = yes\nport = 0", f"[RTMPS]\nenabled = yes\nport = {port}"))
    options = tap.Options()
    options.parseOptions(["--config", str(path)])
    try:
        with pytest.raises(SystemExit):
            tap.makeService(options, reactor=Clock())
    finally:
        busy.close()
    err = capsys.readouterr().err
    assert err.startswith(f"fmspy-gateway: [RTMPS] port = {port}: the port is already in use on 127.0.0.1")
    assert err.count("\n") == 1

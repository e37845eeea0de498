"""The test's own redis-server (redis_server.py): it answers, stops, comes back on the same address."""
import socket

import pytest

from tests.cluster.redis_server import RedisServer


def ping(server: RedisServer) -> bytes:
    """PING in RESP over the server's socket; the raw answer."""
    if server.socket_path is not None:
        family, address = socket.AF_UNIX, server.socket_path
    else:
        family, address = socket.AF_INET, ("127.0.0.1", server.port)
    with socket.socket(family, socket.SOCK_STREAM) as connection:
        connection.settimeout(30)
        connection.connect(address)
        connection.sendall(b"*1\r\n$4\r\nPING\r\n")
        return connection.recv(100)


def test_the_fixture_server_answers(redis_server):
    assert ping(redis_server) == b"+PONG\r\n"
    assert redis_server.url == f"unix://{redis_server.socket_path}"


@pytest.mark.parametrize("tcp", [False, True])
def test_a_stopped_server_comes_back_on_the_same_address(tcp):
    server = RedisServer(tcp=tcp)
    try:
        server.start()
        url = server.url
        assert ping(server) == b"+PONG\r\n"
        server.stop()
        with pytest.raises(OSError):
            ping(server)
        server.start()
        assert server.url == url
        assert ping(server) == b"+PONG\r\n"
        server.kill()
        assert not server.running
        with pytest.raises(OSError):
            ping(server)
    finally:
        server.remove()


def test_a_password_is_required_and_in_the_url():
    server = RedisServer(tcp=True, password="s3cret")
    try:
        server.start()
        assert server.url == f"redis://:s3cret@127.0.0.1:{server.port}/0"
        assert ping(server).startswith(b"-NOAUTH")
    finally:
        server.remove()

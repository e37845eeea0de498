"""RTMPS: the [RTMPS] port, RTMP (and RTMPT: RTMPTS) inside TLS, and its certificate.

Owns the TLS context (TLS 1.2, and 1.3 with ``tls13 = yes``; the cipher
policy below), the reading of the certificate files with one clear line for
each way they can be wrong, their re-reading on SIGHUP (connections already open keep the
context they started with; new ones get the new certificate), and the port
itself: after the TLS handshake the first byte says what the client speaks,
0x03 (the RTMP version, C0) for RTMP, anything else for HTTP, which is
handed to the RTMPT site.  ffmpeg's ``rtmpts://host/app`` means HTTPS on
443, the same default port as ``rtmps://``, so one port serves both as FMS
does.

Nothing here knows RTMP beyond that first byte: the RTMP connections are
the [RTMP] factory's own protocols (same applications, same limits), over a
TLS transport that also reports the bytes it holds (``queued_bytes``) so the
output budget sees them.
"""
import logging
import os
import signal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from OpenSSL import SSL
from twisted.application import service
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from zope.interface import implementer

from ..app.logs import RateLimitedLog

log = logging.getLogger(__name__)

#: TLS 1.2 suites: forward secrecy and AEAD only (Mozilla's "intermediate" list). TLS 1.3 suites are
#: OpenSSL's defaults, all of which are AEAD with forward secrecy.
CIPHERS = (b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
           b"ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
           b"DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305")
#: The first byte of an RTMP client after TLS: C0, version 3 (6 would be RTMPE, which the core refuses).
RTMP_VERSIONS = (0x03, 0x06)


class TLSSetupError(Exception):
    """The [RTMPS] certificate files cannot be used; ``str()`` is the one line to print."""


def _readable(option: str, path: str) -> bytes:
    if not path:
        raise TLSSetupError(f"[RTMPS] {option} is empty: expected a PEM file")
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise TLSSetupError(f"[RTMPS] {option} = {path}: no such file")
    except PermissionError:
        raise TLSSetupError(f"[RTMPS] {option} = {path}: not readable by this user (uid {os.getuid()}): "
                            "permission denied")
    except IsADirectoryError:
        raise TLSSetupError(f"[RTMPS] {option} = {path}: a directory, expected a PEM file")
    except OSError as e:
        raise TLSSetupError(f"[RTMPS] {option} = {path}: cannot be read ({e.strerror or e})")


def _certificates(option: str, path: str, data: bytes):
    """Every certificate of a PEM file, in order; at least one."""
    marker = b"-----BEGIN CERTIFICATE-----"
    blocks = [marker + block for block in data.split(marker)[1:]]
    certificates = []
    for block in blocks:
        try:
            certificates.append(x509.load_pem_x509_certificate(block))
        except ValueError:
            raise TLSSetupError(f"[RTMPS] {option} = {path}: a certificate in it is not valid PEM")
    if not certificates:
        raise TLSSetupError(f"[RTMPS] {option} = {path}: no PEM certificate in it "
                            "(expected -----BEGIN CERTIFICATE-----)")
    return certificates


def make_context(rtmps) -> SSL.Context:
    """A server context for the [RTMPS] section's files; TLSSetupError names the file and the problem."""
    cert_data = _readable("certificate", rtmps.certificate)
    key_data = _readable("key", rtmps.key)
    chain = _certificates("certificate", rtmps.certificate, cert_data)
    if rtmps.chain:
        chain += _certificates("chain", rtmps.chain, _readable("chain", rtmps.chain))
    try:
        key = load_pem_private_key(key_data, password=None)
    except TypeError:
        raise TLSSetupError(f"[RTMPS] key = {rtmps.key}: the private key is encrypted; expected an unencrypted "
                            "PEM key (openssl pkey -in key.pem -out plain.pem)")
    except (ValueError, Exception):
        raise TLSSetupError(f"[RTMPS] key = {rtmps.key}: no PEM private key in it")
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    if not getattr(rtmps, "tls13", False):
        # librtmp over GnuTLS reads a TLS 1.3 NewSessionTicket as a failed read (GNUTLS_E_AGAIN taken
        # for a byte count) and its handshake fails; OpenSSL sends two such tickets unless
        # SSL_CTX_set_num_tickets(0), which pyOpenSSL does not expose.  TLS 1.2 with the suites below
        # is what every RTMPS client speaks.
        context.set_max_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_TICKET
                        | SSL.OP_NO_RENEGOTIATION)
    context.set_cipher_list(CIPHERS)
    context.use_certificate(chain[0])
    for extra in chain[1:]:
        context.add_extra_chain_cert(extra)
    try:
        context.use_privatekey(key)
        context.check_privatekey()
    except SSL.Error:
        raise TLSSetupError(f"[RTMPS] key = {rtmps.key}: does not belong to the certificate "
                            f"{rtmps.certificate}")
    context.set_mode(SSL.MODE_RELEASE_BUFFERS)
    return context


def describe_certificate(context: SSL.Context) -> str:
    """'CN=example.org, valid until 2027-01-01': for the start and reload log lines."""
    certificate = SSL.Connection(context, None).get_certificate(as_cryptography=True)
    until = certificate.not_valid_after_utc.strftime("%Y-%m-%d %H:%M UTC")
    return f"{certificate.subject.rfc4514_string() or '?'}, valid until {until}"


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableTLS:
    """The TLS settings of the RTMPS port; ``reload()`` re-reads the certificate files.

    Each new connection takes the context current when it is accepted; an
    open connection keeps its own (OpenSSL holds it), so a reload drops
    nobody.  A reload that fails keeps the old context and says why.
    """

    def __init__(self, rtmps):
        self.rtmps = rtmps
        self.context = make_context(rtmps)

    def serverConnectionForTLS(self, protocol):
        return SSL.Connection(self.context, None)

    def reload(self) -> bool:
        try:
            self.context = make_context(self.rtmps)
        except TLSSetupError as e:
            log.error("RTMPS: certificate not reloaded, the previous one stays in use: %s", e)
            return False
        log.info("RTMPS: certificate reloaded: %s", describe_certificate(self.context))
        return True


class TLSTransport(BufferingTLSTransport):
    """Twisted's TLS transport, telling the glue what it holds and closing its write side properly."""

    @property
    def queued_bytes(self) -> int:
        """Cleartext waiting for the handshake or the next turn, plus ciphertext the socket has not taken."""
        aggregator = getattr(self._aggregator, "_buffer", ())
        pending = sum(len(piece) for piece in aggregator) + sum(len(piece) for piece in self._appSendBuffer)
        return pending + getattr(self.transport, "queued_bytes", 0)

    def loseWriteConnection(self):
        # Without this, ProtocolWrapper hands the call to the TCP transport, which closes the socket's
        # write side under TLS, before the buffered records (a connect rejection, say) were written.
        self.loseConnection()


class _FirstByte(Protocol):
    """One accepted TLS connection until its first cleartext byte says RTMP or HTTP."""

    inner = None

    def __init__(self, factory: "SecurePortFactory", addr):
        self.factory = factory
        self.addr = addr
        self._timer = None

    def connectionMade(self):
        factory = self.factory
        factory.pending.add(self)
        self._timer = factory.reactor.callLater(factory.rtmp_factory.config.handshake_timeout, self._too_slow)

    def _too_slow(self):
        self._timer = None
        self.factory.refusals.hit("handshakeTimeout", f"{getattr(self.addr, 'host', '?')}: no TLS handshake "
                                                      "and first byte within handshakeTimeout")
        self.transport.abortConnection()

    def _settled(self):
        self.factory.pending.discard(self)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def dataReceived(self, data: bytes):
        inner = self.inner
        if inner is not None:
            inner.dataReceived(data)
            return
        self._settled()
        factory = self.factory
        if data[0] in RTMP_VERSIONS or factory.http_site is None:
            inner = factory.rtmp_factory.buildProtocol(self.addr)
            if inner is not None:
                inner.transport_name = "rtmps"
        else:
            inner = factory.http_site.buildProtocol(self.addr)
        if inner is None:           # refused by the [RTMP] connection limits
            self.transport.abortConnection()
            return
        self.inner = inner
        inner.makeConnection(self.transport)
        inner.dataReceived(data)

    def connectionLost(self, reason):
        if self.inner is not None:
            self.inner.connectionLost(reason)
            return
        self._settled()
        error = reason.value
        if isinstance(error, SSL.Error):
            # A plain RTMP client on this port, an old TLS version, a scanner: one line per interval.
            detail = "; ".join(str(part[2]) for part in (error.args[0] if error.args else [])
                               if isinstance(part, tuple) and len(part) == 3) or str(error)
            self.factory.refusals.hit("tls", f"{getattr(self.addr, 'host', '?')}: TLS handshake failed "
                                             f"({detail})")


class _Selector(Factory):
    """What TLS wraps: a _FirstByte per connection, refused at accept when the [RTMP] limits are reached."""

    def __init__(self, port: "SecurePortFactory"):
        self.port = port

    def buildProtocol(self, addr):
        port = self.port
        config = port.rtmp_factory.config
        open_now = len(port.rtmp_factory.connections) + len(port.pending)
        if config.max_connections and open_now >= config.max_connections:
            port.refusals.hit("maxConnections", f"refused a connection from {getattr(addr, 'host', '?')}: "
                                                f"{open_now} open, the most allowed (maxConnections)")
            return None
        return _FirstByte(port, addr)


class SecurePortFactory(TLSMemoryBIOFactory):
    """The RTMPS port's factory: TLS around a first-byte switch between RTMP and the RTMPT site."""

    protocol = TLSTransport

    def __init__(self, tls: ReloadableTLS, rtmp_factory, http_site=None, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.rtmp_factory = rtmp_factory
        self.http_site = http_site
        self.reactor = reactor
        #: Connections still in their TLS handshake or before their first byte.
        self.pending = set()
        self.refusals = RateLimitedLog(log, clock=reactor, prefix="RTMPS: ")
        super().__init__(tls, False, _Selector(self), clock=reactor)


class CertificateReloader(service.Service):
    """Re-reads the RTMPS certificate files on SIGHUP (certbot's renewal hook sends it)."""

    name = "rtmps-certificate-reloader"

    def __init__(self, tls: ReloadableTLS, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.tls = tls
        self.reactor = reactor
        self._previous = None

    def startService(self):
        super().startService()
        if hasattr(signal, "SIGHUP"):
            self._previous = signal.signal(signal.SIGHUP, self._on_sighup)

    def stopService(self):
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None
        return super().stopService()

    def _on_sighup(self, signum, frame):
        # A signal handler runs between two bytecodes of whatever was running: do the work in the reactor.
        self.reactor.callFromThread(self.tls.reload)

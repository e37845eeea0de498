"""Certificates made by the tests (the ``cryptography`` library, installed with pyOpenSSL)."""
import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_certificate(directory: str, name: str = "localhost", days: int = 30):
    """Write a self-signed certificate for ``name`` (and 127.0.0.1) and its key; returns (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = os.path.join(directory, f"{name}-{certificate.serial_number % 10**8}.crt")
    key_path = cert_path[:-4] + ".key"
    with open(cert_path, "wb") as f:
        f.write(certificate.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


#: A twistd fmspy.cfg with every transport on 127.0.0.1, port 0: RTMP, [HTTP] with [RTMPT], and [RTMPS]
#: with the ``{certificate}`` and ``{key}`` to fill in (``str.format``).
TUNNELS_CONFIG = """
[RTMP]
port = 0
interface = 127.0.0.1
[HTTP]
enabled = yes
port = 0
interface = 127.0.0.1
[RTMPS]
enabled = yes
port = 0
interface = 127.0.0.1
certificate = {certificate}
key = {key}
[RTMPT]
enabled = yes
[EchoApplication]
enabled = yes
name = echotest
"""

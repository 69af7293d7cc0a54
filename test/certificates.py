"""Test certificates made with the openssl command: a CA, and a server certificate it signs.

The triton backend's TLS tests start Triton's server with ``--grpc-use-ssl`` and these files
(``TritonServer(tls=make_server_cert(...))``).
"""

import os
import subprocess


def _openssl(*args):
    subprocess.check_call(['openssl'] + list(args), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)


def make_ca(folder, name):
    """Write a self-signed CA ``name``; return (certificate, key) paths."""
    cert, key = os.path.join(folder, name + '.pem'), os.path.join(folder, name + '.key')
    _openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj',
             '/CN=' + name, '-keyout', key, '-out', cert)
    return cert, key


def make_server_cert(folder, ca):
    """Write a certificate for 127.0.0.1 signed by ``ca`` (cert, key); return (cert, key)."""
    cert, key = os.path.join(folder, 'server.pem'), os.path.join(folder, 'server.key')
    request = os.path.join(folder, 'server.csr')
    extensions = os.path.join(folder, 'server.ext')
    with open(extensions, 'w') as f:
        f.write('subjectAltName=IP:127.0.0.1,DNS:localhost\n')
    _openssl('req', '-new', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1',
             '-keyout', key, '-out', request)
    _openssl('x509', '-req', '-in', request, '-CA', ca[0], '-CAkey', ca[1], '-CAcreateserial',
             '-days', '2', '-extfile', extensions, '-out', cert)
    return cert, key

"""A TLS front for a plain-text gRPC server on localhost, and certificates made with openssl.

MLServer serves gRPC in plain text only; Triton's server takes ``--grpc-use-ssl``. To test the
triton backend's TLS against a real handshake, ``TlsFront`` accepts TLS (ALPN h2, as gRPC
requires) with a server certificate signed by a test CA, and pipes the decrypted bytes to the
plain server. ``make_ca`` / ``make_server_cert`` write the PEM files with the openssl command.
"""

import os
import socket
import ssl
import subprocess
import threading


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


class TlsFront(object):
    """Accept TLS on a free localhost port and forward each connection to ``target_port``."""

    def __init__(self, target_port, cert, key):
        """Listen now; connections are served from daemon threads until ``close``."""
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.context.set_alpn_protocols(['h2'])
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(16)
        self.url = '127.0.0.1:{}'.format(self.listener.getsockname()[1])
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        try:
            secure = self.context.wrap_socket(client, server_side=True)
        except (ssl.SSLError, OSError):
            client.close()  # a handshake the client refused (a certificate it does not trust)
            return
        upstream = socket.create_connection(('127.0.0.1', self.target_port))
        threading.Thread(target=_pipe, args=(upstream, secure), daemon=True).start()
        _pipe(secure, upstream)

    def close(self):
        """Stop accepting connections."""
        self._closed = True
        self.listener.close()


def _pipe(source, destination):
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            destination.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, destination):
            try:
                sock.close()
            except OSError:
                pass

#!/usr/bin/env python3
"""A throwaway PKI for the SSL tests, made with the openssl CLI: a CA, a server certificate for 127.0.0.1 and
localhost, and a client certificate (subject O=Runnel Compat, OU=eng, CN=alice).

Every key is an unencrypted PKCS#8 PEM ("BEGIN PRIVATE KEY"), which both targets read: Kafka's PEM keystore
(KIP-651) and runnel. `server.keystore.pem` is the `ssl.keystore.location` file: the key, then the chain.

  from Python:  certs.make(dir) -> {"ca": path, "server_keystore": path, ...}
  as a CLI:     python certs.py DIR   prints the same dict as one JSON line (for kafkajs)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Long enough for any test run, short enough that a leaked key is worthless.
VALID_DAYS = 2
CLIENT_SUBJECT = "/O=Runnel Compat/OU=eng/CN=alice"


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{done.stderr}")


def _issue(dir: Path, name: str, subject: str, extensions: str) -> None:
    """`name.key` and `name.crt`, signed by the CA in `dir`."""
    (dir / f"{name}.ext").write_text(extensions)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=dir)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", str(VALID_DAYS), "-out", f"{name}.crt", "-extfile", f"{name}.ext", cwd=dir)


def make(dir: Path) -> dict:
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc",
             "-keyout", "ca.key", "-out", "ca.pem", "-days", str(VALID_DAYS), "-subj", "/CN=runnel compat CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=dir)
    _issue(dir, "server", "/CN=localhost",
           "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
           "keyUsage=critical,digitalSignature\n")
    _issue(dir, "client", CLIENT_SUBJECT,
           "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n")
    ca = (dir / "ca.pem").read_text()
    chain = (dir / "server.crt").read_text() + ca
    (dir / "server.chain.pem").write_text(chain)
    (dir / "server.keystore.pem").write_text((dir / "server.key").read_text() + chain)
    return {
        "ca": str(dir / "ca.pem"),
        "server_keystore": str(dir / "server.keystore.pem"),
        "server_chain": str(dir / "server.chain.pem"),
        "server_key": str(dir / "server.key"),
        "client_cert": str(dir / "client.crt"),
        "client_key": str(dir / "client.key"),
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: certs.py DIR")
    print(json.dumps(make(Path(sys.argv[1]))))

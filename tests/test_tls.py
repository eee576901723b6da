"""HTTPS on the same port (``--tls-cert``/``--tls-key``), with a throwaway CA made by the
``openssl`` CLI, as an operator would for the C producer SDK's ``AWS_KVS_CACERT_PATH``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from botocore.exceptions import SSLError

from openkvs.producer import Producer
from tests.conftest import ServerProcess
from tests.media import cluster, simple_block, synthetic_mkv

LEAF_EXTENSIONS = """\
subjectAltName = IP:127.0.0.1, DNS:localhost
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca.pem (CA:TRUE) and server.pem/server.key for 127.0.0.1, signed by it."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is not installed")
    d = tmp_path_factory.mktemp("pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=OpenKVS test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)  # fmt: skip
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
            cwd=d)  # fmt: skip
    (d / "leaf.ext").write_text(LEAF_EXTENSIONS)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "leaf.ext",
            cwd=d)  # fmt: skip
    return d


@pytest.fixture
def https(make_server, pki: Path, tmp_path: Path) -> ServerProcess:  # type: ignore[no-untyped-def]
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = secret\n"
    )
    server = make_server(
        "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
        "--credentials", str(credentials), "--getmedia-idle-timeout-s", "0.3",
    )  # fmt: skip
    assert server.url.startswith("https://")
    return server


def test_boto3_the_producer_and_get_media_work_over_https(https: ServerProcess, pki: Path) -> None:
    ca = str(pki / "ca.pem")
    control = https.client("kinesisvideo", verify=ca, read_timeout=10)
    control.create_stream(StreamName="tls", DataRetentionInHours=1)
    endpoint = control.get_data_endpoint(StreamName="tls", APIName="PUT_MEDIA")["DataEndpoint"]
    assert endpoint == https.url

    fragment = synthetic_mkv([cluster(0, [simple_block(1, 0), simple_block(1, 500)])])
    summary = Producer(
        endpoint,
        "tls",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        timecode_type="RELATIVE",
        verify=ca,
        max_retries=0,
    ).put(fragment)
    assert (summary.fragments_acknowledged, summary.errors) == (1, [])

    media = https.client("kinesis-video-media", verify=ca, read_timeout=10)
    got = media.get_media(StreamName="tls", StartSelector={"StartSelectorType": "EARLIEST"})
    assert b"frame" in got["Payload"].read()  # the SimpleBlock payload came back


def test_a_client_that_does_not_trust_the_ca_is_refused(https: ServerProcess) -> None:
    with pytest.raises(SSLError):
        https.client("kinesisvideo", verify=True, read_timeout=10).list_streams()

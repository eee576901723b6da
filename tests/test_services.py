"""tests/services.py: a real PostgreSQL and a real SeaweedFS S3 endpoint, per session.

Run with ``-s`` to see how long each took to start.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import psycopg
import pytest
from botocore import UNSIGNED
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from tests.services import PostgresServer, S3Target, SeaweedFSServer

SEEN: dict[str, list[str]] = {"databases": [], "buckets": []}
"""What the first run of a test was handed, to check that the second gets a fresh one."""


def test_services_start_and_say_how_fast(
    postgres_server: PostgresServer, seaweedfs_server: SeaweedFSServer
) -> None:
    print(
        f"\n{postgres_server.version}: ready in {postgres_server.startup_seconds:.2f} s"
        f" (initdb + pg_ctl start) at {postgres_server.url()}"
        f"\nSeaweedFS {seaweedfs_server.version}: S3 ready in"
        f" {seaweedfs_server.startup_seconds:.2f} s at {seaweedfs_server.endpoint_url}"
    )
    assert postgres_server.startup_seconds < 15
    assert seaweedfs_server.startup_seconds < 15


@pytest.mark.parametrize("run", [1, 2])
def test_postgres_round_trip_in_a_fresh_database(
    run: int, database_url: str, postgres_server: PostgresServer
) -> None:
    assert database_url.startswith(f"postgresql://postgres@127.0.0.1:{postgres_server.port}/")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SHOW fsync").fetchone() == ("on",)
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
        # fails in the second run unless it has a database of its own
        conn.execute("CREATE TABLE fragments (seq bigint PRIMARY KEY, body bytea NOT NULL)")
        conn.cursor().executemany(
            "INSERT INTO fragments VALUES (%s, %s)", [(1, b"\x1a\x45"), (2, b"\x00" * 1000)]
        )
        conn.commit()
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT seq, length(body) FROM fragments ORDER BY seq").fetchall()
        assert rows == [(1, 2), (2, 1000)]
        (name,) = conn.execute("SELECT current_database()").fetchone() or ("",)
    assert database_url.endswith(f"/{name}")
    with psycopg.connect(postgres_server.url()) as conn:
        names = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
    assert name in names
    assert not names & set(SEEN["databases"]), "an earlier test's database is dropped"
    SEEN["databases"].append(name)


@pytest.mark.parametrize("run", [1, 2])
def test_s3_round_trip_in_a_fresh_bucket(run: int, s3_bucket: S3Target) -> None:
    s3 = s3_bucket.client()
    assert s3.list_objects_v2(Bucket=s3_bucket.bucket)["KeyCount"] == 0
    body = bytes(range(256)) * 64
    s3.put_object(Bucket=s3_bucket.bucket, Key="stream/00000000000000000001", Body=body)
    s3.put_object(Bucket=s3_bucket.bucket, Key="stream/00000000000000000002", Body=b"two")
    got = s3.get_object(Bucket=s3_bucket.bucket, Key="stream/00000000000000000001")
    assert got["Body"].read() == body
    listed = s3.list_objects_v2(Bucket=s3_bucket.bucket, Prefix="stream/")
    assert [o["Key"] for o in listed["Contents"]] == [
        "stream/00000000000000000001",
        "stream/00000000000000000002",
    ]
    assert [o["Size"] for o in listed["Contents"]] == [len(body), 3]
    for earlier in SEEN["buckets"]:  # deleted at the end of its test
        with pytest.raises(ClientError) as gone:
            s3.head_bucket(Bucket=earlier)
        assert gone.value.response["Error"]["Code"] in ("404", "NoSuchBucket")
    SEEN["buckets"].append(s3_bucket.bucket)


def test_s3_credentials_are_checked(s3_bucket: S3Target) -> None:
    wrong = dataclasses.replace(s3_bucket, secret_key="wrong")
    with pytest.raises(ClientError) as refused:
        wrong.client().list_objects_v2(Bucket=s3_bucket.bucket)
    assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    unknown = dataclasses.replace(s3_bucket, access_key="AKIANOSUCHKEY", secret_key="x")
    with pytest.raises(ClientError) as refused:
        unknown.client().put_object(Bucket=s3_bucket.bucket, Key="k", Body=b"x")
    assert refused.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    with pytest.raises(ClientError) as refused:
        s3_bucket.client(signature_version=UNSIGNED).get_object(Bucket=s3_bucket.bucket, Key="k")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert s3_bucket.client().list_objects_v2(Bucket=s3_bucket.bucket)["KeyCount"] == 0


def test_s3_buckets_are_not_created_behind_our_back(s3_bucket: S3Target) -> None:
    with pytest.raises(ClientError) as missing:
        s3_bucket.client().put_object(Bucket=f"{s3_bucket.bucket}-not", Key="k", Body=b"x")
    assert missing.value.response["Error"]["Code"] == "NoSuchBucket"


def test_missing_services_skip_locally_and_fail_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests import services

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install postgresql"):
        services.unavailable("PostgreSQL is not installed: apt-get install postgresql")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        services.unavailable("PostgreSQL is not installed: apt-get install postgresql")

"""``--config openkvs.toml``: flags over OPENKVS_* over the file over the defaults, secrets
masked by ``openkvs config show``, and unknown keys refused by name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def openkvs(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPENKVS_")}
    return subprocess.run(
        [sys.executable, "-m", "openkvs", *args],
        capture_output=True, text=True, timeout=60, env={**clean, **(env or {})},
    )


def setting(output: str, name: str) -> str:
    return next(line.split(" = ", 1)[1] for line in output.splitlines() if line.startswith(name + " "))


def test_flags_beat_the_environment_which_beats_the_file_which_beats_the_defaults(
    tmp_path: Path,
) -> None:
    file = tmp_path / "openkvs.toml"
    file.write_text('port = 1111\nrate_limits = false\nregion = "eu-west-1"\n')
    shows = {
        "default": openkvs("config", "show"),
        "file": openkvs("config", "show", "--config", str(file)),
        "env": openkvs("config", "show", "--config", str(file), env={"OPENKVS_PORT": "2222"}),
        "flag": openkvs("config", "show", "--config", str(file), "--port", "3333",
                        env={"OPENKVS_PORT": "2222"}),
        "env file": openkvs("config", "show", env={"OPENKVS_CONFIG": str(file)}),
    }
    ports = {k: setting(v.stdout, "port") for k, v in shows.items()}
    assert ports == {"default": "8080", "file": "1111", "env": "2222", "flag": "3333",
                     "env file": "1111"}
    assert setting(shows["default"].stdout, "rate_limits") == "true"
    assert setting(shows["file"].stdout, "rate_limits") == "false"
    switched = openkvs("config", "show", "--config", str(file),
                       env={"OPENKVS_NO_RATE_LIMITS": "0"})
    assert setting(switched.stdout, "rate_limits") == "true"  # the environment over the file


def test_show_masks_secrets_and_the_file_may_hold_only_known_keys(tmp_path: Path) -> None:
    file = tmp_path / "openkvs.toml"
    file.write_text(
        's3_secret_access_key = "hunter2"\n'
        'database_url = "postgresql://kvs:hunter2@db:5432/kvs"\n'
        'credentials = \'{"AKID": "hunter2"}\'\n'
    )
    shown = openkvs("config", "show", "--config", str(file))
    assert shown.returncode == 0 and "hunter2" not in shown.stdout
    assert setting(shown.stdout, "database_url") == '"postgresql://kvs:********@db:5432/kvs"'
    file.write_text("port = 9000\nsegment_byts = 1024\n")
    refused = openkvs("serve", "--config", str(file))
    assert refused.returncode == 2 and "unknown key 'segment_byts'" in refused.stderr
    file.write_text('port = "ninety"\n')
    typed = openkvs("config", "show", "--config", str(file))
    assert typed.returncode == 2 and "port" in typed.stderr and "must be int" in typed.stderr


def test_serve_runs_with_the_file(make_server, tmp_path: Path) -> None:
    file = tmp_path / "openkvs.toml"
    file.write_text('region = "eu-west-1"\naccount_id = "999999999999"\n')
    server = make_server("--config", str(file))
    arn = server.client().create_stream(StreamName="cfg")["StreamARN"]
    assert arn.startswith("arn:aws:kinesisvideo:eu-west-1:999999999999:stream/cfg/")


def test_a_password_in_the_database_urls_query_is_masked_too(tmp_path: Path) -> None:
    file = tmp_path / "openkvs.toml"
    file.write_text('database_url = "postgresql://kvs@db:5432/kvs?sslmode=require&password=hunter2"\n')
    shown = openkvs("config", "show", "--config", str(file))
    assert shown.returncode == 0 and "hunter2" not in shown.stdout
    assert setting(shown.stdout, "database_url") == (
        '"postgresql://kvs@db:5432/kvs?sslmode=require&password=********"'
    )

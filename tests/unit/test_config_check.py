"""``ingest config check``: the effective configuration, masked; every problem one line, exit 2."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest

from durable_ingest.cli import main
from durable_ingest.commands.config import MASK, mask_url
from foundation.config import settings_from

CLICKHOUSE_SECRET = "ch-Pa55w0rd-4f1c9e"
SASL_SECRET = "sasl-Pa55w0rd-77ab10"
SUPABASE_SECRET = "eyJhbGciOiJIUzI1NiJ9.service-role-0d1e"
SECRETS = (CLICKHOUSE_SECRET, SASL_SECRET, SUPABASE_SECRET)

GOOD = """
data_dir = "/var/lib/ingest"

[kafka]
bootstrap = "kafka-1.example:9093,kafka-2.example:9093"
security_protocol = "SASL_PLAINTEXT"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "ingest"

[kafka.producer]
"compression.type" = "zstd"

[clickhouse]
dsn = "https://clickhouse.example:8443"
username = "ingest"

[sources.coinbase.runtime]
batch_records = 250

[sources.supabase]
"""


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ./ingest.toml and no INGEST_*, COINBASE_* or SUPABASE_* variable from outside."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("INGEST_", "COINBASE_", "SUPABASE_")):
            monkeypatch.delenv(name)


@pytest.fixture
def secrets_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_CLICKHOUSE_PASSWORD", CLICKHOUSE_SECRET)
    monkeypatch.setenv("INGEST_KAFKA_SASL_PASSWORD", SASL_SECRET)
    monkeypatch.setenv("SUPABASE_URL", "https://abcd.supabase.co")
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", SUPABASE_SECRET)


def write(tmp_path: Path, text: str, name: str = "check.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ingest: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in err


@pytest.mark.usefixtures("secrets_in_env")
def test_good_configuration_is_printed_with_secrets_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 0, the file and the overriding variables named, no secret value anywhere."""
    path = write(tmp_path, GOOD)
    code, out, err = run(capsys, "--config", str(path), "config", "check")
    assert code == 0, err
    for secret in SECRETS:
        assert secret not in out + err
    assert f"# file: {path}" in out
    assert "# environment overrides: INGEST_CLICKHOUSE_PASSWORD, INGEST_KAFKA_SASL_PASSWORD" in out
    assert f'password = "{MASK}"' in out
    assert f"SUPABASE_SERVICE_ROLE_KEY={MASK}" in out
    assert out.splitlines()[-1] == "configuration OK: 2 sources, 3 resources"


@pytest.mark.usefixtures("secrets_in_env")
def test_text_output_is_the_effective_configuration_as_toml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Apart from the summary line the text is TOML that loads back into the same settings,
    with the connector's resources filled in and the file's own values kept."""
    code, out, _ = run(capsys, "--config", str(write(tmp_path, GOOD)), "config", "check")
    assert code == 0
    data = tomllib.loads(out.rsplit("\n", 2)[0])
    matches = data["sources"]["coinbase"]["resources"]["matches"]
    assert matches["schema_file"] == "coinbase/matches.avsc"  # a connector default
    assert data["sources"]["coinbase"]["runtime"]["batch_records"] == 250  # from the file
    assert data["kafka"]["producer"] == {"compression.type": "zstd"}
    assert sorted(data["sources"]["supabase"]["resources"]) == ["projects", "time_entries"]
    reloaded = settings_from(data)
    assert reloaded.kafka.bootstrap == "kafka-1.example:9093,kafka-2.example:9093"
    assert reloaded.clickhouse.password is not None
    assert reloaded.clickhouse.password.get_secret_value() == MASK


@pytest.mark.usefixtures("secrets_in_env")
def test_json_output_is_masked_and_complete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json: one JSON document with settings, connector settings, origin and counts."""
    path = write(tmp_path, GOOD)
    code, out, err = run(capsys, "--config", str(path), "config", "check", "--json")
    assert code == 0, err
    for secret in SECRETS:
        assert secret not in out + err
    report = json.loads(out)
    assert report["config_file"] == str(path)
    assert report["settings"]["clickhouse"]["password"] == MASK
    assert report["settings"]["kafka"]["sasl_password"] == MASK
    supabase = report["connectors"]["supabase"]
    assert supabase["env_prefix"] == "SUPABASE"
    assert supabase["settings"]["service_role_key"] == MASK
    assert supabase["settings"]["url"] == "https://abcd.supabase.co"
    assert (report["sources"], report["resources"], report["ok"]) == (2, 3, True)


def test_user_info_and_tokens_in_urls_are_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A DSN's user name and a token query parameter do not reach the output."""
    monkeypatch.setenv("INGEST_CLICKHOUSE_DSN", "https://alice-x9@ch.example:8443/?token=tk-771")
    code, out, err = run(capsys, "config", "check")
    assert code == 0, err
    assert "alice-x9" not in out
    assert "tk-771" not in out
    assert f'dsn = "https://{MASK}@ch.example:8443/?token={MASK}"' in out
    assert "# file: none (built-in defaults)" in out
    assert out.splitlines()[-1] == "configuration OK: 0 sources, 0 resources"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://u:p@host:8443/db", f"https://{MASK}@host:8443/db"),
        ("https://u:p#q@host/", f"https://{MASK}@host/"),
        ("wss://h/ws?apikey=abc&vsn=1.0.0", f"wss://h/ws?apikey={MASK}&vsn=1.0.0"),
        ("https://h?password=x#frag", f"https://h?password={MASK}#frag"),
        ("chdb:///var/lib/ingest/warehouse", "chdb:///var/lib/ingest/warehouse"),
        ("not a url: a@b", "not a url: a@b"),
    ],
)
def test_mask_url(url: str, expected: str) -> None:
    """User-info and secret-looking query values are masked; other text is unchanged."""
    assert mask_url(url) == expected


def test_unconfigured_connector_source_is_checked_with_source_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--source picks whose connector settings are read: a sink-side check of coinbase
    needs no SUPABASE_* variables, the full check does."""
    path = write(tmp_path, "[sources.supabase]\n")
    code, out, err = run(capsys, "--config", str(path), "config", "check", "--source", "coinbase")
    assert code == 0, err
    assert "COINBASE_PRODUCTS=BTC-USD,ETH-USD" in out
    assert "SUPABASE_URL" not in out
    code, out, err = run(capsys, "--config", str(path), "config", "check")
    assert_one_error(code, out, err, "source supabase", "SUPABASE_URL")


@pytest.mark.parametrize(
    ("toml", "fragments"),
    [
        ("[kafka\nbootstrap = 1\n", ("is not valid TOML",)),
        ('[kafka]\nbootstrapp = "h:1"\n', ("kafka.bootstrapp", "Extra inputs")),
        ("[kafka]\nlinger_ms = -5\n", ("kafka.linger_ms",)),
        ('[sources.trades]\nconnector = "binance"\n', ("sources.trades.connector", "'binance'")),
        (
            '[sources.coinbase.resources.matches]\nschema_file = "coinbase/gone.avsc"\n'
            'key = ["product_id"]\nid_fields = ["trade_id"]\n',
            ("sources.coinbase.resources.matches.schema_file", "coinbase/gone.avsc"),
        ),
        (
            '[sources.coinbase.resources.match]\nschema_file = "coinbase/matches.avsc"\n'
            'key = ["product_id"]\n',
            ("sources.coinbase.resources.match", "its resources: matches"),
        ),
        (
            '[sources.custom.resources.trades]\nschema_file = "coinbase/matches.avsc"\n'
            'key = ["product_id"]\n',
            ("custom.trades", "needs id_fields"),
        ),
        (
            '[sources.custom.resources.trades]\nschema_file = "coinbase/matches.avsc"\n'
            'key = ["product"]\nid_fields = ["trade_id"]\n',
            ("custom.trades", "'product'"),
        ),
        ('[staging]\nschemas_dir = "no-such-folder"\n', ("staging.schemas_dir",)),
        (
            '[kafka]\nsecurity_protocol = "SSL"\nssl_ca_location = "/no/such/ca.pem"\n',
            ("kafka.ssl_ca_location", "/no/such/ca.pem"),
        ),
    ],
    ids=[
        "malformed-toml",
        "unknown-field",
        "bad-value",
        "unknown-connector",
        "missing-schema-file",
        "resource-the-connector-lacks",
        "clickhouse-target-without-id-fields",
        "key-not-in-schema",
        "schemas-dir-missing",
        "tls-file-missing",
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(
    toml: str,
    fragments: tuple[str, ...],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    secrets_in_env: None,
) -> None:
    """Each problem: nothing on stdout, one `ingest: error:` line naming what and where."""
    code, out, err = run(capsys, "--config", str(write(tmp_path, toml)), "config", "check")
    assert_one_error(code, out, err, *fragments)
    for secret in SECRETS:
        assert secret not in err


def test_invalid_connector_settings_name_the_variable_not_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad SUPABASE_URL is named; the service role key given alongside never appears."""
    monkeypatch.setenv("SUPABASE_URL", "ftp://abcd.supabase.co")
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", SUPABASE_SECRET)
    path = write(tmp_path, "[sources.supabase]\n")
    code, out, err = run(capsys, "--config", str(path), "config", "check")
    assert_one_error(code, out, err, "source supabase", "SUPABASE_URL")
    assert SUPABASE_SECRET not in err


def test_unknown_environment_variable_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An INGEST_* variable that is no setting (e.g. INGEST_ADMIN_PORT) is refused by name."""
    monkeypatch.setenv("INGEST_ADMIN_PORT", "8080")
    code, out, err = run(capsys, "config", "check")
    assert_one_error(code, out, err, "INGEST_ADMIN_PORT")


def test_tls_files_that_exist_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The TLS check accepts readable files (and a CA directory)."""
    (tmp_path / "client.pem").write_text("cert")
    (tmp_path / "client.key").write_text("key")
    (tmp_path / "cas").mkdir()
    path = write(
        tmp_path,
        '[kafka]\nsecurity_protocol = "SSL"\nssl_ca_location = "cas"\n'
        'ssl_certificate_location = "client.pem"\nssl_key_location = "client.key"\n'
        '[clickhouse]\ndsn = "https://ch.example:8443"\nca_cert = "cas"\n'
        'client_cert = "client.pem"\nclient_key = "client.key"\n',
    )
    code, _, err = run(capsys, "--config", str(path), "config", "check")
    assert code == 0, err
    path.write_text(path.read_text().replace('client_key = "client.key"', 'client_key = "cas"'))
    code, out, err = run(capsys, "--config", str(path), "config", "check")
    assert_one_error(code, out, err, "clickhouse.client_key", "readable file")


def test_mistyped_connector_variable_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """COINBASE_PRODUCT (for COINBASE_PRODUCTS) would be ignored by the worker: the check names it."""
    monkeypatch.setenv("COINBASE_PRODUCT", "SOL-USD")
    code, out, err = run(capsys, "config", "check", "--source", "coinbase")
    assert_one_error(code, out, err, "COINBASE_PRODUCT ", "COINBASE_PRODUCTS")

"""Configuration: precedence, validation, unsafe settings refused, secrets masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from foundation.config import Settings, settings_from
from foundation.config_load import load_settings
from foundation.errors import ConfigError

SECRET = "s3cr3t-Pa55w0rd-XYZ"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ingest.toml"
    path.write_text(text)
    return path


def test_defaults_are_safe_and_embedded(tmp_path: Path) -> None:
    """Without a file or variables: local broker, embedded warehouse in the data dir."""
    settings = load_settings(write(tmp_path, ""), env={})
    assert settings.kafka.bootstrap == "127.0.0.1:9092"
    assert settings.clickhouse.dsn == "chdb://.ingest/warehouse"
    assert settings.clickhouse.embedded_path == Path(".ingest/warehouse")


def test_precedence_file_then_environment_then_flags(tmp_path: Path) -> None:
    """The environment overrides the file, and command-line flags override both."""
    path = write(
        tmp_path, '[kafka]\nbootstrap = "file:1"\n[clickhouse]\ndsn = "http://file:8123"\n'
    )
    env = {"INGEST_KAFKA_BOOTSTRAP": "env:2", "INGEST_DATA_DIR": "/env"}
    settings = load_settings(path, env=env, overrides={"data_dir": "/flag"})
    assert settings.kafka.bootstrap == "env:2"
    assert settings.clickhouse.dsn == "http://file:8123"
    assert settings.data_dir == Path("/flag")


def test_config_file_from_environment(tmp_path: Path) -> None:
    """INGEST_CONFIG names the file when no path is given."""
    path = write(tmp_path, "data_dir = '/from-file'\n")
    assert load_settings(env={"INGEST_CONFIG": str(path)}).data_dir == Path("/from-file")


def test_warehouse_follows_the_data_dir() -> None:
    """The default embedded DSN is chdb://<data_dir>/warehouse."""
    settings = settings_from({"data_dir": "/var/lib/ingest"})
    assert settings.clickhouse.dsn == "chdb:///var/lib/ingest/warehouse"


def test_unknown_environment_variable_is_an_error() -> None:
    """A mistyped INGEST_ variable is named instead of silently ignored."""
    with pytest.raises(ConfigError, match="INGEST_KAFKA_BOOTSRAP is not a durable-ingest setting"):
        load_settings(None, env={"INGEST_KAFKA_BOOTSRAP": "x"})


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    """Unknown keys are refused (extra='forbid'), with their location."""
    with pytest.raises(ConfigError, match=r"kafka\.bootstrap_servers"):
        load_settings(write(tmp_path, '[kafka]\nbootstrap_servers = "x:1"\n'), env={})


def test_batch_rows_is_still_read_as_the_former_name_of_batch_records(tmp_path: Path) -> None:
    """A file written before the rename keeps its meaning; giving both names is refused,
    naming where."""
    old = load_settings(write(tmp_path, "[sources.coinbase.runtime]\nbatch_rows = 42\n"), env={})
    assert old.sources["coinbase"].runtime.batch_records == 42
    both = "[sources.coinbase.runtime]\nbatch_rows = 42\nbatch_records = 7\n"
    with pytest.raises(ConfigError, match=r"sources\.coinbase\.runtime.*former name"):
        load_settings(write(tmp_path, both), env={})


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    """A file that is not TOML gives one line naming it."""
    path = write(tmp_path, "[kafka\n")
    with pytest.raises(ConfigError, match=f"{path} is not valid TOML"):
        load_settings(path, env={})


def test_missing_file_is_named() -> None:
    """A config path that does not exist is reported."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(Path("/no/such/ingest.toml"), env={})


@pytest.mark.parametrize(
    ("section", "text", "message"),
    [
        ("producer", '"enable.idempotence" = "false"', "enable.idempotence=true"),
        ("producer", 'acks = "1"', "acks=all"),
        ("consumer", '"enable.auto.commit" = "true"', "enable.auto.commit=false"),
        ("producer", '"bootstrap.servers" = "x:1"', "set by durable-ingest"),
    ],
)
def test_unsafe_kafka_overrides_are_refused(
    tmp_path: Path, section: str, text: str, message: str
) -> None:
    """Auto commit on, idempotence off or weaker acks are refused at construction."""
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, f"[kafka.{section}]\n{text}\n"), env={})


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after validation."""
    settings = settings_from({})
    with pytest.raises(Exception, match="frozen"):
        settings.data_dir = Path("/x")  # type: ignore[misc]


def test_sasl_requires_credentials() -> None:
    """SASL without mechanism or credentials is refused."""
    with pytest.raises(ConfigError, match="sasl_mechanism is required"):
        settings_from({"kafka": {"security_protocol": "SASL_SSL"}})
    with pytest.raises(ConfigError, match="sasl_username and kafka.sasl_password are required"):
        settings_from({"kafka": {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"}})


def test_oidc_needs_its_settings_and_masks_the_client_secret() -> None:
    """OAUTHBEARER with OIDC needs id, secret and endpoint; the secret is masked."""
    with pytest.raises(ConfigError, match="sasl_oauthbearer_client_id"):
        settings_from({"kafka": {"sasl_oauthbearer_method": "oidc"}})
    settings = settings_from(
        {
            "kafka": {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "OAUTHBEARER",
                "sasl_oauthbearer_method": "oidc",
                "sasl_oauthbearer_client_id": "ingest",
                "sasl_oauthbearer_client_secret": SECRET,
                "sasl_oauthbearer_token_endpoint_url": "https://idp.example/token",
                "producer": {"sasl.oauthbearer.extensions": "logicalCluster=lkc-1"},
            }
        }
    )
    assert SECRET not in repr(settings)


def test_password_in_dsn_query_is_refused() -> None:
    """A password in the DSN's query string is refused like one in its user part."""
    with pytest.raises(ConfigError, match="must not contain a password"):
        settings_from({"clickhouse": {"dsn": f"https://ch:8443/?password={SECRET}"}})


def test_dsn_scheme_is_checked() -> None:
    """Only chdb://, http:// and https:// DSNs are accepted."""
    with pytest.raises(ConfigError, match="must start with chdb://"):
        settings_from({"clickhouse": {"dsn": "tcp://host:9000"}})


@pytest.mark.parametrize(
    ("section", "name"),
    [
        ("kafka", "sasl_password"),
        ("kafka", "ssl_key_password"),
        ("kafka", "sasl_oauthbearer_client_secret"),
        ("clickhouse", "password"),
    ],
)
def test_a_secret_in_the_file_is_refused_naming_its_variable(
    tmp_path: Path, section: str, name: str
) -> None:
    """Every secret setting is refused in the TOML file (as a DSN password is), naming the
    variable to use instead and never the value."""
    path = write(tmp_path, f'[{section}]\n{name} = "{SECRET}"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    message = str(info.value)
    assert f"sets {section}.{name}, a secret" in message
    assert f"INGEST_{section.upper()}_{name.upper()}" in message
    assert SECRET not in message


def test_secrets_never_appear_in_repr_dump_or_errors(tmp_path: Path) -> None:
    """Passwords given by the environment never show in reprs, dumps or errors."""
    env = {
        "INGEST_KAFKA_SASL_PASSWORD": SECRET,
        "INGEST_CLICKHOUSE_PASSWORD": SECRET,
        "INGEST_KAFKA_SSL_KEY_PASSWORD": SECRET,
    }
    path = write(
        tmp_path,
        '[kafka]\nsecurity_protocol = "SASL_SSL"\nsasl_mechanism = "PLAIN"\nsasl_username = "u"\n',
    )
    settings = load_settings(path, env=env)
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == SECRET
    for text in (
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        str(settings.model_dump()),
    ):
        assert SECRET not in text
    failures = [
        {"kafka": {"sasl_password": SECRET, "linger_ms": "not-a-number"}},
        {"kafka": {"sasl_password": [SECRET]}},
        {"clickhouse": {"dsn": f"https://user:{SECRET}@host:8443"}},
        {"clickhouse": {"password": SECRET, "dsn": SECRET}},
        {"kafka": {"producer": {"sasl.password": SECRET}}},
        {"kafka": {"ssl_key_password": {"nested": SECRET}}},
    ]
    for data in failures:
        with pytest.raises(ConfigError) as info:
            settings_from(data)
        assert SECRET not in str(info.value), data
        # Even the suppressed pydantic error behind it does not hold the input.
        assert SECRET not in str(info.value.__context__), data


def test_model_is_keyword_only_validation() -> None:
    """Building settings in code goes through the same validation."""
    with pytest.raises(Exception, match="heartbeat"):
        Settings.model_validate(
            {"kafka": {"session_timeout_ms": 3000, "heartbeat_interval_ms": 2000}}
        )


def test_resource_target_is_a_table_or_a_stream() -> None:
    """A resource's target is 'clickhouse' or 'kafka:<topic>'; anything else is refused."""
    base = {"schema_file": "coinbase/matches.avsc", "key": ["product_id"]}
    ok = settings_from(
        {"sources": {"s": {"resources": {"r": {**base, "target": "kafka:derived.t"}}}}}
    )
    assert ok.sources["s"].resources["r"].stream_topic == "derived.t"
    with pytest.raises(ConfigError, match="target must be 'clickhouse' or 'kafka:<topic>'"):
        settings_from({"sources": {"s": {"resources": {"r": {**base, "target": "s3://x"}}}}})


def test_sink_targets_cannot_collide_or_loop() -> None:
    """Two resources may not write one table, and a stream may not target a staging topic."""
    from sink_workers.run import check_targets
    from staging.schemas import SchemaCatalog

    base = {
        "schema_file": "coinbase/matches.avsc",
        "key": ["product_id"],
        "id_fields": ["trade_id"],
    }
    colliding = settings_from(
        {"sources": {"a_b": {"resources": {"c": base}}, "a": {"resources": {"b_c": base}}}}
    )
    with pytest.raises(ConfigError, match="would both write table a_b_c"):
        check_targets(colliding, SchemaCatalog.default())
    looping = settings_from(
        {"sources": {"s": {"resources": {"r": {**base, "target": "kafka:ingest.s.r"}}}}}
    )
    with pytest.raises(ConfigError, match="is a staging topic"):
        check_targets(looping, SchemaCatalog.default())
    keyless = settings_from(
        {
            "sources": {
                "s": {
                    "resources": {
                        "r": {"schema_file": "coinbase/matches.avsc", "key": ["product_id"]}
                    }
                }
            }
        }
    )
    with pytest.raises(ConfigError, match="needs id_fields"):
        check_targets(keyless, SchemaCatalog.default())


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b"\xff\xfe[kafka]\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text") as info:
        load_settings(path, env={})
    assert "\n" not in str(info.value)

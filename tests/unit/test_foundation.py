"""Settings and the local broker's configuration (no broker needed)."""

from __future__ import annotations

import pytest

from parley import kafka_local
from parley.settings import BrokerSettings, IngressSettings, KafkaSettings


def test_plain_kafka_bootstrap_env_is_honoured(monkeypatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker-a:9092")
    assert IngressSettings().kafka.bootstrap_servers == "broker-a:9092"


def test_nested_env_wins_over_plain(monkeypatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "plain:9092")
    monkeypatch.setenv("PARLEY_KAFKA__BOOTSTRAP_SERVERS", "nested:9092")
    assert IngressSettings().kafka.bootstrap_servers == "nested:9092"


def test_settings_passed_as_arguments_win_over_the_plain_env(monkeypatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "plain:9092")
    given = KafkaSettings(bootstrap_servers="private:19092")
    assert IngressSettings(kafka=given).kafka.bootstrap_servers == "private:19092"


def test_plain_bootstrap_combines_with_other_nested_env(monkeypatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "plain:9092")
    monkeypatch.setenv("PARLEY_KAFKA__TOPIC_PREFIX", "demo.")
    k = IngressSettings().kafka
    assert (k.bootstrap_servers, k.topic_prefix) == ("plain:9092", "demo.")


def test_broker_settings_point_status_at_its_own_port(monkeypatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    assert BrokerSettings(port=19092).kafka.bootstrap_servers == "127.0.0.1:19092"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "remote:9092")
    assert BrokerSettings(port=19092).kafka.bootstrap_servers == "remote:9092"


def test_secrets_are_masked_in_the_start_up_dict(monkeypatch) -> None:
    monkeypatch.setenv("PARLEY_KAFKA__SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("PARLEY_KAFKA__SASL_MECHANISM", "PLAIN")
    s = IngressSettings()
    assert "hunter2" not in str(s.safe_dict())
    assert s.kafka.client_kwargs()["sasl_plain_password"] == "hunter2"


def test_broker_bootstrap_follows_its_port(monkeypatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("PARLEY_BROKER_PORT", "19092")
    assert BrokerSettings().kafka.bootstrap_servers == "127.0.0.1:19092"


def test_server_properties_single_node_kraft(tmp_path) -> None:
    props = dict(
        line.split("=", 1)
        for line in kafka_local.server_properties(BrokerSettings(port=9999, controller_port=9998),
                                                  tmp_path).splitlines()
        if line and not line.startswith("#")
    )
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9999,CONTROLLER://127.0.0.1:9998"
    assert props["auto.create.topics.enable"] == "false"
    assert props["unclean.leader.election.enable"] == "false"
    assert props["log.dirs"] == str(tmp_path)


def test_a_stale_pid_file_naming_another_process_is_not_a_running_broker(tmp_path) -> None:
    import os

    s = BrokerSettings(cache_dir=tmp_path, port=9999, controller_port=9998)
    home = kafka_local.paths(s).home
    home.mkdir(parents=True)
    kafka_local.paths(s).pid.write_text(str(os.getpid()))  # alive, but this is pytest, not Kafka
    assert kafka_local._running_pid(s) is None
    kafka_local.paths(s).pid.write_text("not a pid")
    assert kafka_local._running_pid(s) is None


def test_answers_is_false_on_a_closed_port() -> None:
    assert kafka_local.answers("127.0.0.1:1", 2.0) is False


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_tls_builds_an_ssl_context(protocol) -> None:
    kw = KafkaSettings(security_protocol=protocol).client_kwargs()
    assert kw["ssl_context"] is not None



def test_both_client_families_connect_as_the_one_connection_says() -> None:
    k = KafkaSettings(bootstrap_servers="b:9093", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                      sasl_username="parley", sasl_password="hunter2")
    assert k.connection() == {"bootstrap.servers": "b:9093", "security.protocol": "SASL_SSL",
                              "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "parley", "sasl.password": "hunter2"}
    assert k.librdkafka_config(**{"acks": "all"}) == {**k.connection(), "security.protocol": "sasl_ssl", "acks": "all"}
    kw = k.client_kwargs()
    assert kw.pop("ssl_context") is not None
    assert kw == {"bootstrap_servers": "b:9093", "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                  "sasl_plain_username": "parley", "sasl_plain_password": "hunter2"}


def test_the_ca_file_is_the_connections(tmp_path) -> None:
    ca = tmp_path / "ca.pem"
    k = KafkaSettings(security_protocol="SSL", ssl_cafile=ca)
    assert k.connection()["ssl.ca.location"] == k.librdkafka_config()["ssl.ca.location"] == str(ca)


def test_plaintext_needs_no_credentials() -> None:
    k = KafkaSettings(bootstrap_servers="b:9092")
    assert k.client_kwargs() == {"bootstrap_servers": "b:9092", "security_protocol": "PLAINTEXT"}
    assert k.librdkafka_config() == {"bootstrap.servers": "b:9092", "security.protocol": "plaintext"}

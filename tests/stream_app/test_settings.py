"""Settings: the environment overrides a deployment uses (deploy/k8s/worker-deployment.yaml)."""

import pytest

from models.errors import ConfigError
from stream_app.settings import load_settings


def test_kafka_keys_from_the_environment():
    env = {"HOOKSTREAM_BOOTSTRAP": "k1:9093,k2:9093", "HOOKSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
           "HOOKSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "HOOKSTREAM_KAFKA_SASL_USERNAME": "hs",
           "HOOKSTREAM_KAFKA_SSL_CAFILE": "/etc/kafka-tls/ca.crt", "HOOKSTREAM_SASL_PASSWORD": "pw",
           "HOOKSTREAM_KAFKA_SSL_CERTFILE": ""}  # empty: ignored
    k = load_settings(environ=env).kafka
    assert (k.bootstrap, k.security_protocol, k.sasl_mechanism, k.sasl_username, k.sasl_password,
            k.ssl_cafile, k.ssl_certfile) == ("k1:9093,k2:9093", "SASL_SSL", "SCRAM-SHA-512", "hs", "pw",
                                              "/etc/kafka-tls/ca.crt", None)
    assert load_settings(environ=env, kafka={"sasl_username": "flag"}).kafka.sasl_username == "flag"
    with pytest.raises(ConfigError, match="kafka.security_protocol"):
        load_settings(environ={"HOOKSTREAM_KAFKA_SECURITY_PROTOCOL": "TLS"})


def test_sasl_password_from_a_mounted_file(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    env = {"HOOKSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "HOOKSTREAM_KAFKA_SASL_MECHANISM": "PLAIN",
           "HOOKSTREAM_KAFKA_SASL_USERNAME": "hs", "HOOKSTREAM_SASL_PASSWORD_FILE": str(secret)}
    assert load_settings(environ=env).kafka.sasl_password == "s3cret"
    assert load_settings(environ={**env, "HOOKSTREAM_SASL_PASSWORD": "env"}).kafka.sasl_password == "env"
    with pytest.raises(ConfigError, match="HOOKSTREAM_SASL_PASSWORD_FILE=.*nope.*cannot read"):
        load_settings(environ={**env, "HOOKSTREAM_SASL_PASSWORD_FILE": str(tmp_path / "nope")})

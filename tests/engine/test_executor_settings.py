"""Where agents run, from flags and config (engine/executor_settings.py): pure, no cluster."""

from __future__ import annotations

import pytest

from sage_stream.config import ExecutorConfig, SageConfig, StreamConfig
from sage_stream.engine.executor_settings import ExecutorChoice, resolve_executor
from sage_stream.errors import SageError

CONFIG_PATH = "/r/.sage/config.toml"


def resolve(executor=None, *, hub=None, insecure=False, tls=(None, None, None), config=None):
    ca, cert, key = tls
    return resolve_executor(executor=executor, hub=hub, insecure=insecure, tls_ca=ca, tls_cert=cert, tls_key=key,
                            config=config or SageConfig(), config_path=CONFIG_PATH)


@pytest.mark.parametrize("flags, config, expected", [
    ({}, SageConfig(), None),
    ({"executor": "local"}, SageConfig(stream=StreamConfig(executor="dask://127.0.0.1:8786")), None),
    ({"executor": "dask://127.0.0.1:8786"}, SageConfig(), ExecutorChoice("tcp://127.0.0.1:8786", None)),
    ({}, SageConfig(stream=StreamConfig(executor="dask://localhost:1")), ExecutorChoice("tcp://localhost:1", None)),
    ({"executor": "dask://[::1]:8786", "hub": "ssh://git@box/r.git"}, SageConfig(),
     ExecutorChoice("tcp://[::1]:8786", "ssh://git@box/r.git")),
    ({"executor": "dask://127.0.0.1:8786"}, SageConfig(executor=ExecutorConfig(hub="/srv/hub.git")),
     ExecutorChoice("tcp://127.0.0.1:8786", "/srv/hub.git")),
    ({"executor": "dask://10.0.0.5:8786", "insecure": True}, SageConfig(),
     ExecutorChoice("tcp://10.0.0.5:8786", None, insecure=True)),
    ({"executor": "dask://sched.lan:8786", "tls": ("ca.pem", "c.pem", "k.pem")}, SageConfig(),
     ExecutorChoice("tls://sched.lan:8786", None, tls=("ca.pem", "c.pem", "k.pem"))),
    ({"executor": "dask+tls://sched.lan:8786"}, SageConfig(executor=ExecutorConfig(
        tls_ca="ca.pem", tls_cert="c.pem", tls_key="k.pem")),
     ExecutorChoice("tls://sched.lan:8786", None, tls=("ca.pem", "c.pem", "k.pem"))),
])
def test_the_executor_is_the_flag_over_the_config_over_local(flags, config, expected):
    assert resolve(config=config, **flags) == expected


@pytest.mark.parametrize("flags, config, says", [
    ({"executor": "dask://10.0.0.5:8786"}, SageConfig(), "pickled code"),
    ({"executor": "dask://sched.example.com:8786"}, SageConfig(), "--insecure"),
    ({"executor": "ray://h:1"}, SageConfig(), "--executor: 'ray://h:1' is not `local` or `dask://HOST:PORT`"),
    ({}, SageConfig(stream=StreamConfig(executor="celery")), f"{CONFIG_PATH}: [stream] executor: 'celery'"),
    ({"hub": "/srv/hub.git"}, SageConfig(), "--hub needs --executor dask://"),
    ({"executor": "dask://127.0.0.1:1", "tls": ("ca.pem", None, None)}, SageConfig(), "all three of --tls-ca"),
])
def test_an_executor_that_cannot_be_used_is_a_message_naming_the_flag_or_key(flags, config, says):
    with pytest.raises(SageError) as raised:
        resolve(config=config, **flags)
    assert says in raised.value.message

"""django_bgjobs.connection: the clients it builds fail in seconds and never re-send a command."""

import pytest
import redis as redis_lib
from django.conf import settings
from django.test import override_settings

from django_bgjobs import connection


def bgjobs(**changes):
    return override_settings(BGJOBS={**settings.BGJOBS, **changes})


def test_client_gets_the_socket_timeouts_and_no_hidden_retries_when_built_from_the_url():
    with bgjobs(SOCKET_CONNECT_TIMEOUT_S=1.5, SOCKET_TIMEOUT_S=4):
        client = connection.get_redis()

        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["socket_connect_timeout"], kwargs["socket_timeout"]) == (1.5, 4)
        assert client.get_retry().get_retries() == 0


def test_redis_options_win_over_the_defaults_when_given():
    with bgjobs(REDIS={"host": "127.0.0.1", "port": 1, "socket_timeout": 9}, SOCKET_TIMEOUT_S=4):
        kwargs = connection.get_redis().connection_pool.connection_kwargs

        assert kwargs["socket_timeout"] == 9
        assert kwargs["socket_connect_timeout"] == 2


@pytest.mark.parametrize(("socket_timeout", "wanted", "allowed"), [
    (5, 2, 2), (5, 10, 4), (1, 10, 0.5), (None, 10, 10),
])
def test_blocking_wait_stays_clear_of_the_socket_timeout_when_one_is_set(socket_timeout, wanted, allowed):
    client = redis_lib.Redis(host="127.0.0.1", port=1, socket_timeout=socket_timeout)

    assert connection.blocking_wait_s(client, wanted) == allowed

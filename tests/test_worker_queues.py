"""django_bgjobs.worker.queues: strict and weighted queue order, and the queue-list parser."""

import collections
import random
import re

import pytest

from django_bgjobs.worker.queues import QueueOrder

ORDERS = 4_000


def test_order_is_the_given_list_every_time_when_no_queue_has_a_weight():
    order = QueueOrder(["critical", "default", "low"])

    assert not order.weighted
    assert [order.order() for _ in range(50)] == [["critical", "default", "low"]] * 50


def test_first_queue_share_follows_the_weights_when_weighted():
    # Given
    random.seed(20240517)
    order = QueueOrder(["heavy,3", "light,1"])

    # When
    firsts = collections.Counter(order.order()[0] for _ in range(ORDERS))

    # Then: 3:1 means 75% first; the tolerance is many standard deviations (0.7%) wide
    share = firsts["heavy"] / ORDERS
    assert 0.70 <= share <= 0.80, firsts


def test_first_queue_share_is_even_when_weights_are_equal():
    # Given
    random.seed(7)
    order = QueueOrder(["a,2", "b,2", "c,2"])

    # When
    firsts = collections.Counter(order.order()[0] for _ in range(ORDERS))

    # Then
    for name in "abc":
        assert 0.28 <= firsts[name] / ORDERS <= 0.39, firsts


def test_every_queue_appears_once_in_each_order_when_weighted():
    order = QueueOrder(["critical,6", "default,3", "low,1"])

    for _ in range(500):
        result = order.order()
        assert sorted(result) == ["critical", "default", "low"]


def test_lowest_weight_queue_sometimes_comes_first_when_weighted():
    # Given: Sidekiq's promise that a weighted order starves no queue
    random.seed(3)
    order = QueueOrder(["critical,6", "default,3", "low,1"])

    # When
    firsts = collections.Counter(order.order()[0] for _ in range(ORDERS))

    # Then: low has weight 1 of 10
    assert 0.06 <= firsts["low"] / ORDERS <= 0.14, firsts


def test_unweighted_entry_counts_as_weight_one_when_another_entry_is_weighted():
    order = QueueOrder(["mail,3", "default"])

    assert order.weighted
    assert order.weights == {"mail": 3, "default": 1}
    assert order.names == ["mail", "default"]


def test_names_keep_the_given_order_and_drop_repeats_when_a_queue_is_listed_twice():
    order = QueueOrder(["default", "low", "default"])

    assert order.names == ["default", "low"]
    assert order.order() == ["default", "low"]


def test_spaces_around_a_name_are_ignored_when_parsing():
    assert QueueOrder([" default ,2"]).weights == {"default": 2}


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([], "no queues"),
        (["default,x"], "not a whole number"),
        (["default,0"], "must be >= 1"),
        (["default,-2"], "must be >= 1"),
        (["bad name"], "invalid"),
        ([""], "invalid"),
        ([3], "not a string"),
        (["."], "invalid"),
        (["..,2"], "invalid"),
    ],
    ids=["empty", "weight-not-int", "weight-zero", "weight-negative", "space-in-name", "empty-name", "not-str",
         "dot", "dot-dot"],
)
def test_init_raises_value_error_when_a_spec_is_invalid(specs, message):
    with pytest.raises(ValueError, match=message):
        QueueOrder(specs)


def test_repr_shows_weights_only_when_weighted():
    assert repr(QueueOrder(["critical", "default"])) == "critical, default"
    assert repr(QueueOrder(["critical,2", "default"])) == "critical,2, default,1"


@pytest.mark.parametrize("queue", [".", "..", "a b"])
def test_runjobs_refuses_a_queue_name_no_queue_can_have_before_it_starts(queue):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match=rf"bad queue list: queue name '{re.escape(queue)}' is invalid"):
        call_command("runjobs", "-q", "default", "-q", queue)

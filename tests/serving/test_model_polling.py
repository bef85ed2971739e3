"""The Python server's model poller survives an unexpected exception (as cc/model_manager.cc PollAll does):
one model's failing poll is logged, the other models are still polled, and later polls still run."""

from __future__ import annotations

import logging

from tfad.serving.models import ModelManager


def test_a_poll_that_raises_is_logged_and_does_not_stop_the_other_models_or_later_polls(tmp_path, caplog):
    for name in ("alpha", "beta"):
        (tmp_path / name).mkdir()
    manager = ModelManager(tmp_path, names=["alpha", "beta"])
    polled: list[str] = []

    def failing() -> None:
        polled.append("alpha")
        raise MemoryError("out of memory while scanning") if len(polled) > 2 else RuntimeError("scan broke")

    manager.slots[0].poll = failing
    manager.slots[1].poll = lambda: polled.append("beta")
    with caplog.at_level(logging.ERROR, logger="tfad.serving"):
        manager.poll_all()
        manager.poll_all()
    assert polled == ["alpha", "beta", "alpha", "beta"]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        "event=model_poll_exception model=alpha error='scan broke'",
        "event=model_poll_exception model=alpha error='out of memory while scanning'",
    ]

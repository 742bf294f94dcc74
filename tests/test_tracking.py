"""The MLflow layout's writer: epochs written by a thread of their own, whole epochs per call, failures surfaced."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoaccel.tracking import EpochWriter, Tracker


def _history(tracker: Tracker, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in tracker.client.get_metric_history(run_id, key))


def test_the_writer_thread_writes_every_epoch_in_order(tmp_path: Path) -> None:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "writer")
    run_id = tracker.start_run("r", {}, {})
    writer = EpochWriter(tracker)
    for epoch in range(1, 41):
        writer.put(run_id, {"train_loss": 1.0 / epoch, "val": float(epoch), "status": "completed"}, epoch)
    writer.flush()
    assert _history(tracker, run_id, "val") == [(e, float(e)) for e in range(1, 41)]
    assert [step for step, _ in _history(tracker, run_id, "train_loss")] == list(range(1, 41))


def test_whole_epochs_per_call_and_a_failure_is_raised_at_flush(tmp_path: Path) -> None:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "writer")
    run_id = tracker.start_run("r", {}, {})
    calls: list[list] = []
    log_batch = tracker.client.log_batch

    def recording_log_batch(run, metrics=(), **kw):
        calls.append(list(metrics))
        return log_batch(run, metrics, **kw)

    tracker.client.log_batch = recording_log_batch
    wide = {f"m{i:03d}": float(i) for i in range(300)} | {"train_loss": 0.5}
    tracker.log_epochs(run_id, [(wide, epoch, None) for epoch in range(1, 5)])  # 4 × 301 values
    assert [len(c) for c in calls] == [903, 301]  # three whole epochs, then the fourth: none split
    assert all(c[-1].key == "train_loss" for c in calls)  # each epoch's train_loss after its other values
    writer = EpochWriter(tracker)
    writer.put("no-such-run", {"train_loss": 1.0}, 1)
    with pytest.raises(RuntimeError, match="writing epochs to MLflow"):
        writer.flush()


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("postgresql://bob:s3cr3t@db.host:5432/mlflow", "postgresql://bob:***@db.host:5432/mlflow"),
        ("http://alice:pw@mlflow:5000", "http://alice:***@mlflow:5000"),
        ("mysql+pymysql://u:p@h/db?charset=utf8&password=x", "mysql+pymysql://u:***@h/db?charset=utf8&password=***"),
        ("http://host/?token=abc&x=1", "http://host/?token=***&x=1"),
        ("sqlite:////tmp/x/mlflow.db", "sqlite:////tmp/x/mlflow.db"),
        ("sqlite:///rel.db?timeout=20", "sqlite:///rel.db?timeout=20"),
        ("https://user@host", "https://user@host"),
    ],
)
def test_redact_uri_masks_passwords_and_tokens_and_leaves_the_rest(uri: str, shown: str) -> None:
    from autoaccel.tracking import redact_uri

    assert redact_uri(uri) == shown

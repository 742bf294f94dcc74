"""The MLflow layout's writer: epochs written by a thread of their own, whole epochs per call, failures surfaced."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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


def test_a_write_failure_names_the_store_without_its_password(tmp_path: Path) -> None:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "writer")
    tracker.uri = "postgresql://bob:s3cr3t@db/mlflow"  # as a server store would be named in the message
    writer = EpochWriter(tracker)
    writer.put("no-such-run", {"train_loss": 1.0}, 1)
    with pytest.raises(RuntimeError) as raised:
        writer.flush()
    assert "postgresql://bob:***@db/mlflow" in str(raised.value) and "s3cr3t" not in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__  # nor in a chained error


def test_config_errors_and_unexpected_tracebacks_hide_passwords(capsys: pytest.CaptureFixture[str]) -> None:
    from autoaccel.cli import _redacted_traceback
    from autoaccel.errors import ConfigError, DataError

    error = ConfigError("tracking", {"uri": "http://u:s3cr3t@h:5000", "experimnet": "x"}, "uri and/or experiment")
    assert "u:***@h:5000" in str(error) and "s3cr3t" not in str(error)
    assert "s3cr3t" not in str(DataError("https://host/data.csv?token=s3cr3t: 403 Forbidden"))
    try:
        raise OSError("API request to http://sweeper:s3cr3t@127.0.0.1:9/api/2.0/runs failed")
    except OSError as unexpected:
        _redacted_traceback(type(unexpected), unexpected, unexpected.__traceback__)
    printed = capsys.readouterr().err
    assert "Traceback" in printed and "sweeper:***@127.0.0.1:9" in printed and "s3cr3t" not in printed


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
        # SQLAlchemy takes these characters unencoded in a password
        ("postgresql://user:pa/ss@host/db", "postgresql://user:***@host/db"),
        ("mysql://user:pa#ss@host/db", "mysql://user:***@host/db"),
        ("mysql://user:pa?s@s@host/db", "mysql://user:***@host/db"),
        ("postgresql://u@h/db?sslpassword=x;client_secret=y", "postgresql://u@h/db?sslpassword=***;client_secret=***"),
        ("postgresql://user:pa ss word@host/db", "postgresql://user:***@host/db"),  # unencoded spaces
        (
            "see http://host:8080/path and mail admin@example.org",
            "see http://host:8080/path and mail admin@example.org",
        ),
        ("http://[::1", "http://[::1"),  # malformed: returned, never raises
        ("file:///a:b@c", "file:///a:b@c"),
        # a message naming the URL it called (as MLflow's errors do)
        (
            "API request to http://sweeper:s3cr3t@127.0.0.1:9/api/2.0/runs failed",
            "API request to http://sweeper:***@127.0.0.1:9/api/2.0/runs failed",
        ),
    ],
)
def test_redact_uri_masks_passwords_and_tokens_and_leaves_the_rest(uri: str, shown: str) -> None:
    from autoaccel.redaction import redact_uri

    assert redact_uri(uri) == shown


def _server_answering(status: int) -> tuple[Any, str]:
    """A real HTTP server on loopback whose every GET answers ``status``."""
    import http.server
    import threading

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://user:pw@127.0.0.1:{server.server_address[1]}"


@pytest.mark.parametrize("status", [200, 401, 403])
def test_a_tracking_server_that_answers_its_health_check_is_accepted(status: int) -> None:
    from autoaccel.tracking import check_tracking_uri

    server, uri = _server_answering(status)
    try:
        check_tracking_uri(uri)  # 401/403: a server behind authentication is there
    finally:
        server.shutdown()


def test_a_tracking_uri_mlflow_cannot_use_is_refused_at_once(tmp_path: Path) -> None:
    import socket

    from autoaccel.errors import ConfigError
    from autoaccel.tracking import check_tracking_uri

    check_tracking_uri(f"sqlite:///{tmp_path}/m.db")  # a database: MLflow names its own errors
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{closed.getsockname()[1]}"
    server, not_mlflow = _server_answering(404)
    try:
        folder = "not a folder: MLflow 3.17 refuses its file store (it is in maintenance mode) unless"
        cases = {
            "foo://bar": "an MLflow tracking URI: sqlite:///path.db, postgresql://",
            "./some/folder": "(a path is not one; a SQLite file there: sqlite:///some/folder/mlflow.db)",
            os.path.relpath(tmp_path): folder,  # a relative path to a folder: MLflow's file store too
            "runs.db": "(a path is not one; a SQLite file there: sqlite:///runs.db)",
            str(tmp_path): folder,
            f"file://{tmp_path}": folder,
            "http://": "http(s)://host:port of an MLflow tracking server",
            refused: "no answer: ConnectionRefusedError",
            not_mlflow: "GET /health answered 404",
        }
        for uri, allowed in cases.items():
            with pytest.raises(ConfigError) as error:
                check_tracking_uri(uri, key="--tracking-uri")
            assert error.value.key == "--tracking-uri" and allowed in error.value.allowed, error.value
            assert "pw" not in str(error.value)
    finally:
        server.shutdown()


def test_a_folder_is_refused_as_a_store_unless_mlflow_is_told_to_allow_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow 3.17 raises an MlflowException traceback for its file store; every command that opens a store says
    so in one line instead, with the URIs it takes, before anything is read or written. MLflow's own opt-out is
    honoured."""
    from autoaccel.cli import main
    from autoaccel.tracking import check_tracking_uri

    folder = tmp_path / "some" / "folder"
    folder.mkdir(parents=True)
    commands = {
        "export": ["export", "--experiment", "x", "--out", str(tmp_path / "out")],
        "report": ["report", "--experiment", "x", "--out", str(tmp_path / "out")],
        "train": ["train", "--workload", "quadratic", "--epochs", "1", "--checkpoint-dir", str(tmp_path / "out")],
    }
    for name, argv in commands.items():
        for uri in (str(folder), f"file://{folder}"):
            assert main([*argv, "--tracking-uri", uri]) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"autoaccel {name}: error: --tracking-uri = {uri!r}: an MLflow tracking URI: ")
            assert "sqlite:///path.db" in err and "unless MLFLOW_ALLOW_FILE_STORE=true" in err, err
            assert err.count("\n") == 1 and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["some"] and not any(folder.iterdir())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    check_tracking_uri(str(folder))  # allowed: MLflow opens it


def test_children_are_read_page_by_page_with_their_tags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One reader of a sweep's child runs, paging until MLflow has no more (pages of 3 here: 8 children), filtered
    by tags; other parents' children and the parent itself are left out."""
    from autoaccel.tracking import _schema, children

    monkeypatch.setattr(_schema, "_PAGE", 3)
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "paged")
    parent, other = tracker.start_run("p", {}, {}), tracker.start_run("o", {}, {})
    for i in range(8):
        tracker.start_run(f"c{i}", {}, {"phase": "tuning" if i % 2 else "final", "i": i}, parent_id=parent)
    tracker.start_run("stranger", {}, {"phase": "tuning"}, parent_id=other)
    found = list(children(tracker.client, tracker.experiment_id, parent))
    assert sorted(int(r.data.tags["i"]) for r in found) == list(range(8))
    tuning = children(tracker.client, tracker.experiment_id, parent, phase="tuning")
    assert sorted(int(r.data.tags["i"]) for r in tuning) == [1, 3, 5, 7]


@pytest.mark.parametrize(
    ("value", "back"),
    [
        (None, None),
        (True, True),
        (False, False),
        (5, 5),
        (-3, -3),
        (1e-4, 1e-4),
        (0.5, 0.5),
        ("off", "off"),
        ("auto", "auto"),
        ([10, 20], [10, 20]),
        ({"k": 5}, {"k": 5}),
        (float("inf"), float("inf")),
    ],
)
def test_a_param_decodes_to_the_value_it_encoded(value: Any, back: Any) -> None:
    """What a sweep logs as a param (``encode_param``) reads back as the same value (``decode_param``): the one
    encoding that the final runs, studies and the export share."""
    from autoaccel.tracking import decode_param, encode_param

    decoded = decode_param(encode_param(value))
    assert decoded == back and type(decoded) is type(back)


def test_a_sweeps_sqlite_store_is_switched_to_write_ahead_logging(tmp_path: Path) -> None:
    """The one use of MLflow's private surface (tracking/_mlflow_internals.py): the engine of the store MLflow
    opened, reached to set SQLite's WAL mode; a MLflow release that moves it fails here."""
    import sqlite3

    from mlflow.tracking import MlflowClient

    from autoaccel.tracking._store import _write_ahead_log

    path = tmp_path / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{path}")
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # SQLite's default
    _write_ahead_log(client)
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    client.create_experiment("still-writes")  # the store works on through the reconfigured engine
    assert client.get_experiment_by_name("still-writes") is not None

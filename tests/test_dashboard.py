"""The live view a sweep prints: optuna-dashboard (the `dashboard` extra) opens a sweep's Optuna journal directly,
serves it, and listens on loopback only."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from helpers import listening_addresses


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_optuna_dashboard_serves_a_sweep_journal_on_loopback(tmp_path: Path) -> None:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = tmp_path / "optuna.journal"
    study = optuna.create_study(study_name="sweep:sgd", storage=JournalStorage(JournalFileBackend(str(journal))))
    study.optimize(lambda trial: trial.suggest_float("lr", 1e-3, 1.0, log=True), n_trials=3)
    executable = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    assert executable, "the dashboard extra is part of the test install"
    port = _free_port()
    server = subprocess.Popen(
        [executable, str(journal), "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        body = None
        while body is None and server.poll() is None:  # as long as it takes to start (pytest-timeout: a hang)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as response:
                    body = json.loads(response.read())
            except OSError:
                time.sleep(0.3)
        assert body is not None, "the dashboard did not answer"
        assert [s["study_name"] for s in body["study_summaries"]] == ["sweep:sgd"]
        listening = listening_addresses(port)
        assert listening and listening <= {"127.0.0.1", "::1"}, listening
    finally:
        server.terminate()
        server.wait(timeout=30)

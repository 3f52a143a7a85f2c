"""The simulator without the ``sim`` extra (matplotlib, tqdm), as in the controller image."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from autoscaler.cli import main
from autoscaler.sim import run as sim_run

from .test_run import POLICY, SURGE


def test_plot_without_matplotlib_says_which_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--plot`` without matplotlib: the table is printed, then exit 1 naming the extra."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    plot = tmp_path / "run.png"
    code = main(
        ["simulate", "--policy", str(POLICY), "--trace", SURGE, "--duration", "120",
         "--plot", str(plot)]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1
    assert "p95ttft_ms" in captured.out
    assert "nim-autoscaler[sim]" in captured.err
    assert not plot.exists()


def test_progress_bar_without_tqdm_is_a_silent_stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without tqdm an enabled bar counts progress and prints nothing."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    bar = sim_run._progress_bar(100, enabled=True)
    bar.update(40)
    bar.close()
    assert bar.n == 40
    assert type(bar).__module__ == sim_run.__name__


def test_progress_bar_with_tqdm() -> None:
    """With the extra installed, an enabled bar is tqdm's."""
    bar = sim_run._progress_bar(100, enabled=True)
    try:
        assert type(bar).__module__.startswith("tqdm")
    finally:
        bar.close()

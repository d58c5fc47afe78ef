"""Help texts print what they say: rich markup must not eat square brackets such as ``deleverage[ray]``."""

from __future__ import annotations

import pytest

from deleverage.cli import main


@pytest.mark.parametrize("command", ["replay", "stress", "sweep"])
def test_the_backend_help_names_the_ray_extra(command, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "pip install 'deleverage[ray]'" in out, out

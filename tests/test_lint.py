import pytest

from tensornic.sim.lint import designs, lint


@pytest.mark.parametrize("name, factory", designs(), ids=[name for name, _ in designs()])
def test_generated_verilog_is_lint_clean(name, factory):
    # -Wall with only the named waivers of sim/verilator.py: a new kind of warning fails here.
    assert lint(name, factory()) == ""

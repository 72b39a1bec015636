from tensornic.sim.lint import designs, lint


def test_generated_verilog_is_lint_clean():
    # -Wall with only the named waivers of sim/verilator.py: a new kind of warning fails here.
    for name, factory in designs():
        assert lint(name, factory()) == "", name

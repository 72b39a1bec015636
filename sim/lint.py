"""Verilator lint of every generated design, with Amaranth's harmless warnings waived by name.

`tensornic lint` (make lint) runs it; tests/test_lint.py keeps it green in CI.
"""

import subprocess
import tempfile
from pathlib import Path

from . import verilator as vl


def designs():
    """(name, factory) of each design that goes to Verilator or a board."""
    from ..rtl.bf16 import Bf16Decoder, Bf16Encoder
    from ..rtl.fp32_add import Fp32Adder
    from ..rtl.mxint8 import MxInt8Decoder, MxInt8Encoder
    from ..rtl.rgmii import RgmiiAdapter
    from ..rtl.ring_engine import RingEngine
    from ..rtl.ring_link import RingFabric
    from ..rtl.soc import Soc
    from ..rtl.uart import UartPhy
    from ..rtl.udp import UdpEndpoint
    from ..engine import engine_sim_config
    return [
        ("soc", lambda: Soc()),
        ("soc_sim", lambda: Soc(byte_port=True)),
        ("soc_engine_sim", lambda: Soc(engine_sim_config(), byte_port=True)),
        ("uart_phy", lambda: UartPhy()),
        ("rgmii_adapter", lambda: RgmiiAdapter()),
        ("udp_endpoint", lambda: UdpEndpoint()),
        ("ring_engine", lambda: RingEngine()),
        ("ring_fabric2", lambda: RingFabric(2)),
        ("fp32_add_x2", lambda: Fp32Adder(2)),
        ("bf16_encoder_x2", lambda: Bf16Encoder(2)),
        ("bf16_decoder_x2", lambda: Bf16Decoder(2)),
        ("mxint8_encoder_k16_x3", lambda: MxInt8Encoder(16, 3)),
        ("mxint8_decoder_x3", lambda: MxInt8Decoder(32, 3)),
    ]


def lint(name, component):
    """Lint one component; return Verilator's output if it complained, else ''."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / f"{name}.v"
        source.write_text(vl.to_verilog(component, name))
        result = subprocess.run([vl.verilator_executable(), "--lint-only", "-Wall", *vl.lint_args(),
                                 "--top-module", name, str(source)],
                                capture_output=True, text=True)
    return "" if result.returncode == 0 else (result.stdout + result.stderr)


def lint_all(console=None):
    failures = {}
    for name, factory in designs():
        output = lint(name, factory())
        if output:
            failures[name] = output
        if console is not None:
            console.print(f"{name}: " + ("[red]warnings[/red]\n" + output if output else "[green]clean[/green]"))
    return failures

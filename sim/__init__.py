"""Simulation: Verilator runner, cocotb test benches, and the simulated device behind a pseudo-terminal."""

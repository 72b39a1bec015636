"""tensornic gateware: Amaranth components only. Imports neither the host runtime nor the simulators."""

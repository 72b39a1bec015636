"""Board tops and per-board configurations; bitstreams with the YoWASP toolchain."""

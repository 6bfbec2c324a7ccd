"""Calibration data and quantization recipes (installed as `edgevlm.calibration`)."""

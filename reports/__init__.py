"""Report rendering for verify/bench/quality results (installed as `edgevlm.reports`)."""

"""Device farms reached through a provider's API (AWS Device Farm); Qualcomm AI Hub lives in backends/aihub.py."""

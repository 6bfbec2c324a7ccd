"""Export graph and recipes: split a loaded MiniCPM-V into vision-encoder, token-embedding and
text-decoder artifacts (installed as `edgevlm.export`)."""

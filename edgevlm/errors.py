"""Errors a user can act on.

Every error names what is wrong and how to fix it; the CLI prints `str(err)` without a traceback
for these, and exits with `exit_code`.
"""

from __future__ import annotations


class EdgeVLMError(Exception):
    """Base class: a problem with the user's input or environment, not a bug in edgevlm."""

    exit_code = 2

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(problem if fix is None else f"{problem}\n  fix: {fix}")


class ConfigError(EdgeVLMError):
    """config.json (or a preset, or a user option) is missing, malformed or unsupported."""


class CheckpointError(EdgeVLMError):
    """A checkpoint's weight files are missing, corrupt, or do not fit the model."""


class TokenizerError(EdgeVLMError):
    """The tokenizer files are missing or do not fit the model."""


class ImageLoadError(EdgeVLMError):
    """An input image cannot be read or decoded."""


class PromptError(EdgeVLMError):
    """The prompt cannot be assembled (e.g. too many images for the template)."""

"""Errors a user can act on, and the exit code each kind maps to.

Every error names what is wrong and how to fix it; the CLI prints `str(err)` without a traceback
for these (`edgevlm --debug` shows it), and exits with the class's `exit_code`:

  0  success
  1  a check or gate failed (verify, a quality gate, an artifact whose sha256 no longer matches)
  2  bad input or usage (a malformed config, recipe, manifest, image, option)
  3  the environment (disk full, permissions, a missing tool or package, a busy output folder)
"""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_ENVIRONMENT = 0, 1, 2, 3


class EdgeVLMError(Exception):
    """Base class: a problem with the user's input or environment, not a bug in edgevlm."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(problem if fix is None else f"{problem}\n  fix: {fix}")


class GateFailed(EdgeVLMError):
    """A check or gate failed: the input was well-formed, the result is not acceptable."""

    exit_code = EXIT_FAILED


class EnvironmentProblem(EdgeVLMError):
    """The machine, not the input: disk full, no permission, a missing tool, a busy output folder."""

    exit_code = EXIT_ENVIRONMENT


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


class LimitExceeded(EdgeVLMError):
    """An input asks for more than edgevlm will allocate or parse (checked before the work starts)."""


class UnsafePath(EdgeVLMError):
    """A path named inside a manifest or checkpoint index leaves its folder (traversal, absolute, symlink)."""


class IntegrityError(GateFailed):
    """A file's sha256 differs from the one its manifest records: it is not the file that was exported."""


class OutputBusy(EnvironmentProblem):
    """Another edgevlm process is writing the same output folder."""

"""Errors caused by input (a file, a download, a flag). The CLI prints them as one
clear message without a traceback; library users can catch them. :func:`warn_once`: a setting
that cannot apply where it runs, said once per process."""

import warnings

_WARNED: set[str] = set()


def warn_once(key: str, message: str) -> None:
    """One ``RuntimeWarning`` per ``key`` and process."""
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


class DDEQError(RuntimeError):
    """Base class: the message names the file or key and says what to do."""


class DataError(DDEQError):
    """A dataset file is missing, malformed or fails its checksum."""


class DownloadError(DDEQError):
    """A download failed or was refused; the message names the URL and the manual fallback."""


class BadCloudError(DataError):
    """Some clouds of a batch are unusable; ``positions`` are their places in the batch and ``problem``
    says what is wrong. Training and evaluation translate positions into split rows and source files."""

    def __init__(self, message: str, positions: list[int], problem: str) -> None:
        super().__init__(message)
        self.positions, self.problem = list(positions), problem

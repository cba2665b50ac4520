"""Errors caused by input (a file, a download, a flag). The CLI prints them as one
clear message without a traceback; library users can catch them."""


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

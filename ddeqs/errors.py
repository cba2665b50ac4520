"""Errors caused by input (a file, a download, a flag). The CLI prints them as one
clear message without a traceback; library users can catch them."""


class DDEQError(RuntimeError):
    """Base class: the message names the file or key and says what to do."""


class DataError(DDEQError):
    """A dataset file is missing, malformed or fails its checksum."""


class DownloadError(DDEQError):
    """A download failed or was refused; the message names the URL and the manual fallback."""

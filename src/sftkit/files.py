"""Reading the small text files a user names (configs, mix specs, registries): one place for their errors."""

from __future__ import annotations

from pathlib import Path

from sftkit.errors import SftkitError


def read_text(path: str | Path, what: str) -> str:
    """The UTF-8 text of ``path`` (a leading BOM dropped); a missing file, a folder or a non-text file is a
    one-line SftkitError naming the file and ``what`` it should be (e.g. "config")."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SftkitError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise SftkitError(f"{path}: is a folder, not a file") from None
    except UnicodeDecodeError:
        raise SftkitError(f"{path}: not a UTF-8 text file") from None

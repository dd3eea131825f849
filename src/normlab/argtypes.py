"""argparse types for the scripts' flags: a bad value is refused by argparse (usage, one `error:` line, exit 2)
before any work starts, never found out halfway."""

import argparse
from pathlib import Path


def int_at_least(text: str, minimum: int) -> int:
    """An integer >= `minimum`, or argparse's one-line refusal."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; expected an integer >= {minimum}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{value} is not allowed; it must be >= {minimum}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (--jobs, --repeats, --steps)."""
    return int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """An integer >= 0 (--extend)."""
    return int_at_least(text, 0)


def existing_dir(text: str) -> Path:
    """A folder that exists (--workdir, a runs/ root)."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not allowed: no such folder")
    return path


def output_file(text: str) -> Path:
    """A file to write whose folder exists (--out)."""
    path = Path(text)
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not allowed: its folder {path.parent} does not exist")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not allowed: it is a folder, not a file")
    return path


def key_value(text: str) -> tuple[str, str]:
    """KEY=VALUE (--filter norm.name=group)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; expected KEY=VALUE, e.g. norm.name=group")
    return key, value


def command_parser(doc: str) -> argparse.ArgumentParser:
    """A command's parser whose --help shows its module docstring whole, as written (its examples included)."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)

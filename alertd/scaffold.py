"""The example files shipped inside the package: the demo's village and the starter `alertd init` writes.

They live once, in the repository's config/ folder, which pyproject.toml installs as the package
alertd.examples (as it installs devices/ as alertd.devices). Reading them through importlib.resources
makes `alertd demo` and `alertd init` work from any working directory and from any kind of install.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping
from importlib.resources.abc import Traversable
from pathlib import Path

from alertd.errors import ConfigError

EXAMPLES_PACKAGE = "alertd.examples"

# name written -> file in alertd.examples. The settings are the example's own: annotated, production
# defaults (store in /var/lib/alertd, broker on loopback), no secrets. The village is three groups of ten,
# good to watch but a lot to delete, so a deployment starts from a one-group roster instead.
VILLAGE: Mapping[str, str] = {"alertd.toml": "alertd.toml", "roster.toml": "roster.toml"}
STARTER: Mapping[str, str] = {"alertd.toml": "alertd.toml", "roster.toml": "roster.starter.toml"}


def _examples() -> Traversable:
    try:
        return importlib.resources.files(EXAMPLES_PACKAGE)
    except ModuleNotFoundError:
        # A source checkout run without installing it: the files sit at the top of the repository.
        return Path(__file__).resolve().parent.parent / "config"


def example_text(name: str) -> str:
    return _examples().joinpath(name).read_text(encoding="utf-8")


def write_examples(folder: Path, files: Mapping[str, str]) -> list[Path]:
    """Write each example file into folder (created if missing) under its new name; return the paths.

    Never overwrites: if any target exists, raises ConfigError naming each one and writes nothing, so a
    half-replaced pair (new settings, old roster) cannot happen.
    """
    targets = {folder / name: example_text(source) for name, source in files.items()}
    taken = [path for path in targets if path.exists() or path.is_symlink()]
    if taken:
        raise ConfigError([_exists(path) for path in taken])
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        for path, text in targets.items():
            # "x": a file that appeared since the check above is still not overwritten.
            with path.open("x", encoding="utf-8") as file:
                file.write(text)
            written.append(path)
    except BaseException as err:
        for path in written:  # all or nothing
            path.unlink(missing_ok=True)
        if isinstance(err, FileExistsError):
            raise ConfigError([_exists(Path(err.filename))]) from err
        raise
    return written


def _exists(path: Path) -> str:
    return f"{path}: already exists; alertd init never overwrites (move it away or choose another folder)"

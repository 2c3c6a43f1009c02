"""Chapter 07's stored widgets, rendered offline: their JavaScript is served by the site instead of two CDNs.

Notebook 07 (the latent explorer, §2.2-§2.4 and §3.3 steps 4-5 of the article) is committed with its widget state,
and myst-nb renders that state in the page with ``@jupyter-widgets/html-manager`` on top of RequireJS, both loaded
from CDNs by default: offline, or behind a firewall, the reader sees no slider and no product image. At build time
this extension fetches the two npm packages once with ``npm pack`` (a tarball each: nothing is installed and no
package script runs), checks them against the SHA-512 pinned below, keeps the few files a page needs in
``_build/npm`` (never committed, like the virtual environment), lets Sphinx copy them into the site's
``_static/widgets`` beside ``book/_static/widgets/paths.js`` (which tells RequireJS where they are) and points
myst-nb's ``nb_ipywidgets_js`` at the three scripts. Without npm, or without the registry on a first build, it
says why in one warning line and leaves myst-nb's CDN URLs in place: the rest of the book is built as before, and
the widgets still work online.

The Pages workflow installs only Jupyter Book, so this file uses the standard library, never ``prodlab``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from sphinx.util import logging

LOGGER = logging.getLogger(__name__)
# The html-manager released with ipywidgets 8.1.9 (protocol 2.0, the one notebook 07's state is stored in): it
# needs @jupyter-widgets/controls ^5.0.13 and base ^6.0.12, as jupyterlab-manager 5.0.16 of that release does.
PACKAGES = {  # npm spec -> (tarball sha512, the files a page needs, relative to the package)
    "@jupyter-widgets/html-manager@1.0.15": (
        "5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==",
        ("dist/embed-amd.js", "dist/*.woff2", "dist/*.woff", "dist/*.ttf", "dist/*.eot", "dist/*.svg")),
    "requirejs@2.3.7": (
        "DouTG8T1WanGok6Qjg2SXuCMzszOo0eHeH9hDZ5Y4x8Je+9JB38HdTLT4/VA8OaUhBa0JPVHJ0pyBkM1z+pDsw==",
        ("require.js",)),
}
TARGET = "widgets"  # under the site's _static/, with the fonts embed-amd.js loads
OURS = Path(__file__).resolve().parents[1] / "_static"  # widgets/paths.js: where RequireJS finds those fonts
SCRIPTS = {f"{TARGET}/require.js": {}, f"{TARGET}/paths.js": {}, f"{TARGET}/embed-amd.js": {}}  # in loading order
NPM_TIMEOUT_S = 180  # two tarballs (5 MB); npm retries a slow registry before it gives up


class FetchError(RuntimeError):
    """The packages could not be staged; the message is the one line the build prints."""


def cache_key() -> str:
    """One folder per set of pinned versions, so that a version bump fetches again."""
    return "+".join(spec.lstrip("@").replace("/", "-") for spec in PACKAGES)


def _pack(npm: str, into: Path) -> dict[str, Path]:
    """``npm pack`` every package into ``into``; return spec -> tarball, each checked against its pinned hash."""
    try:
        done = subprocess.run([npm, "pack", "--json", "--prefer-offline", "--pack-destination", str(into), *PACKAGES],
                              capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        raise FetchError(f"npm pack did not finish within {NPM_TIMEOUT_S} s") from error
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()] or ["no message"]
        raise FetchError(f"npm pack failed: {lines[-1]}")
    packed = json.loads(done.stdout)
    tarballs = {f"{p['name']}@{p['version']}": into / p["filename"] for p in packed}
    for spec, (pinned, _) in PACKAGES.items():
        if spec not in tarballs:
            raise FetchError(f"npm pack did not return {spec}")
        digest = base64.b64encode(hashlib.sha512(tarballs[spec].read_bytes()).digest()).decode()
        if digest != pinned:
            raise FetchError(f"{spec}: the tarball's SHA-512 is not the pinned one (sha512-{digest})")
    return tarballs


def _extract(tarballs: dict[str, Path], work: Path, target: Path) -> None:
    """Unpack each tarball (``filter="data"``: no links out, no devices) and copy the files a page needs."""
    target.mkdir(parents=True)
    for spec, tarball in tarballs.items():
        unpacked = work / tarball.stem
        with tarfile.open(tarball) as archive:
            archive.extractall(unpacked, filter="data")
        for pattern in PACKAGES[spec][1]:
            found = sorted((unpacked / "package").glob(pattern))
            if not found:
                raise FetchError(f"{spec} has no {pattern}")
            for file in found:
                shutil.copy2(file, target / file.name)


def stage(cache: Path) -> Path:
    """The folder whose ``widgets/`` holds the pinned files: fetched once, then reused by every build."""
    staged = cache / cache_key()
    if (staged / TARGET).is_dir():
        return staged
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError("npm not found (Debian: apt-get install nodejs npm)")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".fetch-") as tmp:
        work = Path(tmp)
        _extract(_pack(npm, work), work, work / "staged" / TARGET)
        os.replace(work / "staged", staged)  # whole or absent: a build stopped halfway leaves no partial copy
    return staged


def configure(app: Any, config: Any) -> None:
    """Serve the staged files from ``_static/widgets`` and load them instead of the CDN copies."""
    try:
        staged = stage(Path(app.outdir).parent / "npm")
    except (FetchError, OSError, ValueError, tarfile.TarError) as error:
        LOGGER.warning("widgets load from a CDN, not from the site: %s", error)
        return
    config.html_static_path = [*config.html_static_path, str(OURS), str(staged)]
    config.nb_ipywidgets_js = SCRIPTS


def setup(app: Any) -> dict[str, Any]:
    app.connect("config-inited", configure, priority=900)  # after Jupyter Book's own defaults
    return {"parallel_read_safe": True, "parallel_write_safe": True}

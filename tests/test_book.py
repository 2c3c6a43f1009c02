"""The workbook as a website (``make book``): built from the committed notebooks, read in headless Chromium.

The static checks need only the built site; the browser tests open the index and two chapters over HTTP on
127.0.0.1, with every request to another host blocked (the site must work offline), and check what a reader sees:
the maths typeset by MathJax with no raw ``$...$`` or ``\\(...\\)`` left, every image loaded, and every link of the
table of contents answered; and chapter 07's stored widgets drawn from the site's own copy of their JavaScript
(``book/_ext/offline_widgets.py``; npm fetches it at build time). Like the explorer's test they need Chromium and
Playwright, are skipped with the reason without them, and fail instead under CI. The site is rebuilt first when it
is missing or older than its sources.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urljoin, urlparse

import pytest
import yaml
from conftest import BROWSER_MISSING, CHROMIUM, CHROMIUM_FLAGS, IN_CI, sync_playwright

from prodlab import config

ROOT = config.REPO_ROOT
SITE = ROOT / "_build" / "html"
BUILD = [str(Path(sys.executable).parent / "jupyter-book"), "build", ".", "--config", "book/_config.yml",
         "--toc", "book/_toc.yml"]  # what `make book` runs
SOURCES = [*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("book/**/*"), *ROOT.glob("docs/gallery/*")]
CHAPTERS = ["notebooks/01_losses.html", "notebooks/05_editing.html"]  # the most maths; the most figures
BUILD_TIMEOUT_S = 300  # about 15 s on an idle 2-core machine, plus about 30 s the first time npm fetches
EXPLORER = "notebooks/07_explorer.html"  # the chapter committed with its widget state
WIDGET_SCRIPTS = ["../_static/widgets/require.js", "../_static/widgets/paths.js", "../_static/widgets/embed-amd.js"]


def _stale() -> bool:
    built = SITE / ".buildinfo"
    return not built.exists() or max(p.stat().st_mtime for p in SOURCES if p.is_file()) > built.stat().st_mtime


@pytest.fixture(scope="module")
def site() -> Path:
    """The built site, (re)built by the same command as ``make book`` when it is missing or stale."""
    if _stale():
        if not Path(BUILD[0]).exists():
            reason = "Jupyter Book is not installed (pip install -e '.[dev]')"
            if IN_CI:
                pytest.fail(reason)
            pytest.skip(reason)
        start = time.perf_counter()
        done = subprocess.run(BUILD, cwd=ROOT, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        print(f"book built in {time.perf_counter() - start:.1f} s")
    return SITE


def test_the_table_of_contents_lists_every_notebook_in_chapter_order_with_its_article_sections():
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text(encoding="utf-8"))
    chapters = [c for part in toc["parts"] for c in part["chapters"] if c["file"].startswith("notebooks/")]
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert [c["file"].removeprefix("notebooks/") for c in chapters] == notebooks
    for chapter in chapters:
        assert re.search(r"\([^)]*§\d", chapter["title"]), f"{chapter['file']}: the title names no article section"


def test_the_glossary_pairs_the_articles_terms_and_corrects_its_two_errors():
    text = (ROOT / "book" / "glossary.md").read_text(encoding="utf-8")
    for chinese, english in [("生成对抗网络", "GAN"), ("变分自编码器", "VAE"), ("潜在空间", "latent space"),
                             ("判别器", "discriminator"), ("生成器", "generator"), ("重参数化", "reparameterisation"),
                             ("KL散度", "KL divergence"), ("损失函数", "loss function"), ("图像增强", "enhancement"),
                             ("图像修复", "inpainting"), ("个性化编辑", "personalised editing")]:
        row = next((line for line in text.splitlines() if line.startswith(f"| {chinese}")), "")
        assert english in row, f"no glossary row pairs {chinese} with {english}"
    ramp = next(line for line in text.splitlines() if "Ramp Loss" in line)
    assert "反熵损失" in ramp and "non-saturating" in ramp
    kl = next(line for line in text.splitlines() if "真实数据分布" in line)
    assert "prior" in kl and "p(z)" in kl


@pytest.mark.integration
def test_the_site_is_built_offline_with_its_own_mathjax(site):
    for page in ["book/intro.html", *CHAPTERS]:
        html = (site / page).read_text(encoding="utf-8")
        assert 'src="../_static/mathjax/MathJax.js' in html, f"{page}: MathJax is not served by the site"
        assert "cdn.jsdelivr.net/npm/mathjax" not in html
    assert (site / "_static" / "mathjax" / "MathJax.js").is_file()
    assert "prodlab/imageio.py" in (site / "book" / "source.html").read_text(encoding="utf-8")  # source links


def _extension(name: str):
    """One of book/_ext's modules, loaded by path as Sphinx loads it (``book/_ext`` is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "book" / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _offline_widgets():
    return _extension("offline_widgets")


def test_a_changed_table_of_contents_rewrites_every_page_so_every_sidebar_lists_every_chapter(tmp_path):
    outdated = _extension("toc_refresh").outdated
    toc = tmp_path / "_toc.yml"
    toc.write_text("root: intro\n", encoding="utf-8")
    app = SimpleNamespace(srcdir=str(tmp_path), config=SimpleNamespace(external_toc_path="_toc.yml"))
    env = SimpleNamespace(found_docs={"intro", "notebooks/07_explorer", "old"})
    assert outdated(app, env, set(), set(), set()) == []  # a first build reads every page anyway
    assert outdated(app, env, set(), set(), set()) == []  # unchanged: incremental
    toc.write_text("root: intro\nchapters: [notebooks/08_diffusion]\n", encoding="utf-8")
    assert outdated(app, env, set(), set(), {"old"}) == ["intro", "notebooks/07_explorer"]
    assert outdated(app, env, set(), set(), set()) == []


def test_the_pinned_html_manager_is_the_one_ipywidgets_asks_for():
    ipywidgets = pytest.importorskip("ipywidgets")
    caret = ipywidgets._version.__html_manager_version__  # e.g. "^1.0.1": same major, at least that version
    pinned = next(spec for spec in _offline_widgets().PACKAGES if spec.startswith("@jupyter-widgets/html-manager@"))
    wanted = tuple(map(int, caret.lstrip("^").split(".")))
    have = tuple(map(int, pinned.rsplit("@", 1)[1].split(".")))
    assert have[0] == wanted[0] and have >= wanted, f"{pinned} does not satisfy ipywidgets' {caret}"


def _configure_offline_widgets(monkeypatch, outdir: Path) -> tuple[SimpleNamespace, list[str]]:
    """Run the extension's ``configure`` as Sphinx would, with no npm on the PATH; return the config and warnings."""
    widgets = _offline_widgets()
    monkeypatch.setattr(widgets.shutil, "which", lambda name: None)
    warnings: list[str] = []
    monkeypatch.setattr(widgets.LOGGER, "warning", lambda message, *args: warnings.append(message % args))
    config = SimpleNamespace(html_static_path=["_static"], nb_ipywidgets_js={"https://cdn.example/embed.js": {}})
    widgets.configure(SimpleNamespace(outdir=str(outdir)), config)
    return config, warnings


def test_without_npm_the_book_says_so_in_one_line_and_keeps_the_cdn(tmp_path, monkeypatch):
    config, warnings = _configure_offline_widgets(monkeypatch, tmp_path / "html")
    assert len(warnings) == 1 and "npm not found" in warnings[0], warnings
    assert config.nb_ipywidgets_js == {"https://cdn.example/embed.js": {}} and config.html_static_path == ["_static"]


def test_once_fetched_the_widget_javascript_is_reused_without_npm(tmp_path, monkeypatch):
    staged = tmp_path / "npm" / _offline_widgets().cache_key()
    (staged / "widgets").mkdir(parents=True)
    config, warnings = _configure_offline_widgets(monkeypatch, tmp_path / "html")
    assert not warnings
    assert list(config.nb_ipywidgets_js) == [script.removeprefix("../_static/") for script in WIDGET_SCRIPTS]
    assert config.html_static_path[-1] == str(staged)


FAKE_NPM = """import json, pathlib, sys, tarfile, io
into = pathlib.Path(sys.argv[sys.argv.index("--pack-destination") + 1])
packed = []
for spec in sys.argv[sys.argv.index("--pack-destination") + 2:]:
    name, version = spec.rsplit("@", 1)
    filename = name.lstrip("@").replace("/", "-") + f"-{version}.tgz"
    with tarfile.open(into / filename, "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("package/require.js"), io.BytesIO(b""))
    packed.append({"name": name, "version": version, "filename": filename})
print(json.dumps(packed))
"""


def test_a_tarball_that_is_not_the_pinned_one_is_refused(tmp_path):
    widgets = _offline_widgets()
    npm = tmp_path / "npm"
    npm.write_text(f"#!{sys.executable}\n{FAKE_NPM}", encoding="utf-8")
    npm.chmod(0o755)
    with pytest.raises(widgets.FetchError, match="SHA-512 is not the pinned one"):
        widgets._pack(str(npm), tmp_path)


def _require_widget_javascript() -> None:
    """Skip (fail under CI) when the site could not get the widgets' JavaScript: npm is what fetches it."""
    if shutil.which("npm") is None:
        reason = "npm not found: the book's widgets load from a CDN (Debian: apt-get install nodejs npm)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.mark.integration
def test_the_explorer_chapter_loads_its_widget_javascript_from_the_site(site):
    _require_widget_javascript()
    html = (site / EXPLORER).read_text(encoding="utf-8")
    scripts = re.findall(r'<script[^>]* src="([^"?]+)', html)
    assert [src for src in scripts if "/widgets/" in src or "require" in src] == WIDGET_SCRIPTS, scripts
    assert "cdnjs.cloudflare.com" not in html and "cdn.jsdelivr.net/npm/@jupyter-widgets" not in html
    for script in WIDGET_SCRIPTS:
        assert (site / "notebooks" / script).resolve().is_file(), script
    assert list((site / "_static" / "widgets").glob("*.woff2")), "the widgets' icon fonts are not in the site"


@pytest.fixture(scope="module")
def server(site) -> Iterator[str]:
    """The site over HTTP on a free loopback port, as GitHub Pages would serve it."""
    handler = functools.partial(QuietHandler, directory=str(site))
    httpd = QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    """A browser that leaves a page while a file is sent closes the connection: not an error of the site."""

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


RENDERED = """async () => {
    if (!window.MathJax || !MathJax.Hub) return null;
    await new Promise(done => MathJax.Hub.Queue(done));
    const article = document.querySelector("article") || document.body;
    const prose = article.cloneNode(true);
    prose.querySelectorAll("pre, code, script, style, .MathJax_Preview").forEach(e => e.remove());
    return {math: article.querySelectorAll(".math.notranslate").length,  // Sphinx's; MathJax adds span.math too
            typeset: article.querySelectorAll(".MathJax, .MathJax_Display").length,
            errors: article.querySelectorAll(".MathJax_Error, .merror").length,
            text: prose.textContent};
}"""
IMAGES = """async () => {
    const images = [...document.images];
    images.forEach(img => { img.loading = "eager"; });
    await Promise.all(images.map(img => img.complete ? null : new Promise(r => { img.onload = img.onerror = r; })));
    return images.map(img => [img.getAttribute("src"), img.naturalWidth]);
}"""


def _check_page(page, url: str) -> dict:
    """Open ``url``; assert the maths rendered and the images loaded; return what was seen."""
    page.goto(url)
    page.wait_for_function("() => window.MathJax && MathJax.Hub && MathJax.isReady === true", timeout=60_000)
    seen = page.evaluate(RENDERED)
    assert seen["errors"] == 0, f"{url}: {seen['errors']} MathJax errors"
    assert seen["typeset"] >= seen["math"] > 0, f"{url}: {seen['math']} formulas, {seen['typeset']} typeset"
    raw = re.findall(r"\$[^$\s][^$]{0,80}\$|\\\(.{0,80}?\\\)|\\\[.{0,80}?\\\]", seen["text"])
    assert not raw, f"{url}: raw maths left in the text: {raw[:5]}"
    broken = [src for src, width in page.evaluate(IMAGES) if width == 0]
    assert not broken, f"{url}: images that did not load: {broken}"
    return seen


NAV = "nav.bd-docs-nav a.reference.internal"  # the table of contents in every page's sidebar


@contextmanager
def offline_page() -> Iterator[tuple[object, list[str]]]:
    """A Chromium page that may ask only 127.0.0.1, and the list of the requests it made to other hosts (blocked)."""
    assert BROWSER_MISSING is None or not IN_CI, f"CI must run the browser test: {BROWSER_MISSING}"
    if BROWSER_MISSING is not None:
        pytest.skip(BROWSER_MISSING)
    outside: list[str] = []

    def offline(route) -> None:
        if urlparse(route.request.url).hostname in {"127.0.0.1", None}:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.route("**/*", offline)
            yield page, outside
        finally:
            browser.close()


@pytest.mark.integration
def test_the_book_in_a_browser_renders_maths_images_and_a_working_table_of_contents(server):
    with offline_page() as (page, outside):
        _check_page(page, server)  # index.html redirects to the introduction
        assert page.url.endswith("book/intro.html"), page.url
        toc = page.eval_on_selector_all(NAV, "links => links.map(a => a.href.split('#')[0])")
        for chapter in CHAPTERS:
            _check_page(page, urljoin(server, chapter))
            sidebar = page.eval_on_selector_all(NAV, "links => links.map(a => a.href.split('#')[0])")
            assert sidebar == toc, f"{chapter}: its sidebar is not the introduction's (a stale page?)"
        assert not outside, f"the site asked for resources on other hosts: {outside}"
    assert len(toc) >= len(list((ROOT / "notebooks").glob("*.ipynb"))) + 2, toc
    for link in toc:
        with urllib.request.urlopen(link.split("#")[0], timeout=10) as answer:
            assert answer.status == 200, link


WIDGET_IMAGES = """() => [...document.querySelectorAll(".cell_output .jupyter-widgets img.widget-image")]
    .map(img => img.complete ? img.naturalWidth : 0)"""


@pytest.mark.integration
def test_the_explorer_chapter_in_a_browser_draws_its_stored_widgets_offline(server):
    """Chapter 07's four explorers, as stored by the full run: their sliders and product images, drawn by the
    html-manager from the site's own copy, with every other host blocked."""
    _require_widget_javascript()
    notebook = json.loads((ROOT / "notebooks" / "07_explorer.ipynb").read_text(encoding="utf-8"))
    state = notebook["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    images = sum(model["model_name"] == "ImageModel" for model in state.values())
    sliders = sum(model["model_name"].endswith("SliderModel") for model in state.values())
    failed: list[str] = []
    with offline_page() as (page, outside):
        from playwright.sync_api import TimeoutError as PlaywrightTimeout  # installed: offline_page did not skip

        page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.goto(urljoin(server, EXPLORER))
        try:
            page.wait_for_function(f"() => ({WIDGET_IMAGES})().filter(w => w > 0).length >= {images}",
                                   timeout=60_000)
        except PlaywrightTimeout as error:  # say what was drawn instead
            pytest.fail(f"{EXPLORER}: widget images drawn {page.evaluate(WIDGET_IMAGES)}, stored {images}: {error}")
        drawn = page.locator(".cell_output .jupyter-widgets .widget-slider").count()
        assert drawn == sliders, f"{EXPLORER}: {drawn} sliders drawn, {sliders} stored"
        assert not outside, f"{EXPLORER} asked for resources on other hosts: {outside}"
    widget_failures = [f for f in failed if "/widgets/" in f or "@jupyter-widgets" in f]
    assert not widget_failures, f"{EXPLORER}: widget files that did not load: {widget_failures}"

// Chapter 07's stored widgets (book/_ext/offline_widgets.py): loaded after require.js, before embed-amd.js.
// embed-amd.js defines its modules by name (@jupyter-widgets/base, .../html-manager/dist/libembed-amd, ...) and
// loads its icon fonts relative to where RequireJS would look for each module: by default a folder named after it
// beside the page (notebooks/@jupyter-widgets/...), which does not exist. Map those names to this folder, which
// holds embed-amd.js and its fonts, wherever the page is.
(function () {
  const here = new URL(".", document.currentScript.src).href.replace(/\/$/, "");
  window.requirejs.config({paths: {"@jupyter-widgets/html-manager/dist": here, "@jupyter-widgets": here}});
})();

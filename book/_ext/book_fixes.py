"""Two small fixes to Jupyter Book 1.x's page output, so the rendered book logs no console errors.

1. sphinx-thebe registers its inline configuration script twice (its env-before-read-docs hook runs
   once per read pass), and the second `const THEBE_JS_URL = ...` throws "Identifier has already been
   declared". We drop exact duplicate inline scripts from each page.
2. pydata-sphinx-theme logs "Got invalid theme mode" when `default_mode` is empty, which is what
   the template gets by default; we set it to "auto" (follow the reader's system setting).
"""


def _default_mode(app, config):
    if not config.html_context.get("default_mode"):
        config.html_context["default_mode"] = "auto"


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for js in scripts:
        # The two copies differ only in filename None vs "" (both mean "inline").
        key = (getattr(js, "filename", js) or "", repr(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(js)
    context["script_files"] = kept


def setup(app):
    app.connect("config-inited", _default_mode)
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

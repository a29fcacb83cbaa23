// Loaded right after require.js (see _config.yml: nb_ipywidgets_js). The Jupyter widget manager is an
// AMD module that finds its icon fonts relative to its own module URL; RequireJS builds that URL from
// baseUrl, which by default is the page's folder. Point it at _static/, where the manager is vendored.
require.config({ baseUrl: document.currentScript.src.replace(/[^/]*$/, "") });

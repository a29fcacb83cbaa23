#!/usr/bin/env bash
# Vendor the browser assets the rendered book needs, so it renders with no network at reading time:
#   MathJax 3 (math typesetting), RequireJS and the Jupyter widgets HTML manager (widget outputs).
# They come from the npm registry as pinned tarballs (integrity checked below), are unpacked into
# vendor/ (git-ignored) and served from the book's own _static/ folder (see _config.yml:
# html_static_path, mathjax_path, nb_ipywidgets_js). The folder is deliberately not named `_static`:
# Jupyter Book would inject every .js file in such a folder into every page.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=vendor
stamp="$dest/.vendored-v2"
[ -f "$stamp" ] && exit 0

command -v npm >/dev/null || { echo "npm is needed to vendor MathJax and the widget manager (apt-get install npm)"; exit 1; }

# name@version  sha512 integrity of the registry tarball
pkgs=(
  "mathjax@3.2.2 sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
  "requirejs@2.3.8 sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw=="
  "@jupyter-widgets/html-manager@1.0.15 sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA=="
)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for entry in "${pkgs[@]}"; do
  spec=${entry%% *}; want=${entry##* }
  (cd "$tmp" && npm pack --silent "$spec" >/dev/null)
  tgz=$(ls -t "$tmp"/*.tgz | head -n 1)
  got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
  if [ "$got" != "$want" ]; then
    echo "Integrity mismatch for $spec: expected $want, got $got"; exit 1
  fi
  mkdir -p "$tmp/x" && tar xzf "$tgz" -C "$tmp/x"
  case "$spec" in
    mathjax@*)   rm -rf "$tmp/mathjax" && mv "$tmp/x/package/es5" "$tmp/mathjax" ;;
    requirejs@*) cp "$tmp/x/package/require.js" "$tmp/require.js" ;;
    # The manager loads its icon fonts from <data-jupyter-widgets-cdn>/@jupyter-widgets/html-manager/dist/,
    # so it keeps that layout (the attribute is set in _config.yml).
    @jupyter-widgets/html-manager@*) hm="$tmp/@jupyter-widgets/html-manager/dist" && rm -rf "$tmp/@jupyter-widgets" &&
                 mkdir -p "$hm" && cp "$tmp/x/package/dist/embed-amd.js" "$tmp/x/package/dist/"*.{woff,woff2,ttf,eot,svg} "$hm/" ;;
  esac
  rm -rf "$tmp/x" "$tgz"
done

rm -rf "$dest" && mkdir -p "$dest"
mv "$tmp/mathjax" "$tmp/require.js" "$tmp/@jupyter-widgets" "$dest/"
touch "$stamp"
echo "vendored MathJax, RequireJS and the widget manager into $dest/ ($(du -sh "$dest" | cut -f1))"

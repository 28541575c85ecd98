/*
 * Sarafan storefront snippet for Shopify: keeps the ?ref= code of the landing URL in a
 * first-party cookie (30 days) and writes it to the cart as the attribute "sarafan_ref",
 * which Shopify copies into the order's note_attributes. Sarafan's Shopify adapter reads it
 * from there (docs/integrations.md). Add it to theme.liquid before </body>:
 *   <script src="{{ 'sarafan-ref.js' | asset_url }}" defer></script>
 * No dependencies; does nothing when there is no code. Tested in tests/functional/test_storefront_snippet.py.
 */
(function (window, document) {
  "use strict";
  var COOKIE = "sarafan_ref";
  var ATTRIBUTE = "sarafan_ref";
  var MAX_AGE = 30 * 24 * 3600;
  var CODE = /^[A-Za-z0-9-]{4,32}$/;

  function fromUrl() {
    var match = /[?&]ref=([^&#]*)/.exec(window.location.search || "");
    if (!match) return null;
    var code = decodeURIComponent(match[1].replace(/\+/g, " ")).trim();
    return CODE.test(code) ? code : null;
  }

  function fromCookie() {
    var match = new RegExp("(?:^|; )" + COOKIE + "=([^;]*)").exec(document.cookie || "");
    var code = match ? decodeURIComponent(match[1]) : null;
    return code && CODE.test(code) ? code : null;
  }

  function remember(code) {
    document.cookie = COOKIE + "=" + encodeURIComponent(code) + "; path=/; max-age=" + MAX_AGE + "; SameSite=Lax";
  }

  function writeCartAttribute(code) {
    if (typeof window.fetch !== "function") return Promise.resolve(false);
    var body = { attributes: {} };
    body.attributes[ATTRIBUTE] = code;
    return window.fetch("/cart/update.js", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body)
    }).then(function (r) { return r.ok; }, function () { return false; });
  }

  function run() {
    var code = fromUrl();
    if (code) remember(code);
    code = code || fromCookie();
    if (!code) return Promise.resolve(null);
    return writeCartAttribute(code).then(function () { return code; });
  }

  window.SarafanRef = { run: run, fromUrl: fromUrl, fromCookie: fromCookie };
  window.SarafanRef.ready = run();
})(window, document);

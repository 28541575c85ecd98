// Runs docs/snippets/sarafan-ref.js in a Node vm with a minimal browser surface
// (location, document.cookie, fetch) and prints what it did as JSON.
"use strict";
const fs = require("fs");
const vm = require("vm");
const [snippetPath, search, cookie] = process.argv.slice(2);
const calls = [];
const jar = { value: cookie || "" };
const document = {
  get cookie() { return jar.value; },
  set cookie(v) { jar.value = v.split(";")[0]; jar.last = v; },
};
const window = {
  location: { search: search || "" },
  fetch: (url, init) => { calls.push({ url, init }); return Promise.resolve({ ok: true }); },
};
vm.runInNewContext(fs.readFileSync(snippetPath, "utf8"), { window, document });
window.SarafanRef.ready.then((code) => {
  process.stdout.write(JSON.stringify({ code, cookie: jar.value, cookieAttrs: jar.last || null,
    calls: calls.map((c) => ({ url: c.url, method: c.init.method, body: JSON.parse(c.init.body) })) }));
});

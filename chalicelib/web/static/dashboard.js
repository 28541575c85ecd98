/* Sarafan operator/partner dashboard: plain JS, no build step. The key lives in sessionStorage only and
   is sent as a bearer header; it never goes into a URL. Charts: uPlot (vendored, assets/uPlot.iife.min.js). */
(function () {
  "use strict";
  var KEY = "sarafan_key";
  var $ = function (sel) { return document.querySelector(sel); };
  var charts = [];
  var partnerNames = {};
  function partnerName(id) { return id ? (partnerNames[id] || id) : "—"; }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") { node.textContent = attrs[k]; } else { node.setAttribute(k, attrs[k]); }
    });
    (children || []).forEach(function (c) { node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return node;
  }

  function api(path) {
    return fetch(path, { headers: { "Authorization": "Bearer " + sessionStorage.getItem(KEY), "Accept": "application/json" } })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (body) {
          if (!r.ok) {
            var err = new Error((body.error && body.error.message) || ("HTTP " + r.status));
            err.status = r.status;
            throw err;
          }
          return body;
        });
      });
  }

  function body(name) { return document.querySelector('[data-panel="' + name + '"] .body'); }
  function state(name, cls, text) {
    var b = body(name);
    b.replaceChildren(el("p", { "class": cls, text: text }));
    b.parentNode.setAttribute("data-state", cls);
  }
  function done(name, nodes) {
    var b = body(name);
    b.replaceChildren.apply(b, nodes);
    b.parentNode.setAttribute("data-state", "ready");
  }
  function fmt(n) { return n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"); }
  function money(minor) { return minor === null || minor === undefined ? "—" : (minor / 100).toLocaleString("en-US", { maximumFractionDigits: 2 }); }
  function pct(x) { return x === null || x === undefined ? "—" : (x * 100).toFixed(1) + " %"; }

  function table(columns, rows) {
    var head = el("tr", {}, columns.map(function (c) { return el("th", { text: c[0] }); }));
    var lines = rows.map(function (row) {
      return el("tr", {}, columns.map(function (c) { return el("td", { text: c[1](row) }); }));
    });
    return el("table", {}, [el("thead", {}, [head]), el("tbody", {}, lines)]);
  }

  function chart(name, title, periods, series) {
    var b = body(name);
    var box = el("div", { "class": "chart" });
    b.replaceChildren(box);
    b.parentNode.setAttribute("data-state", "ready");
    var xs = periods.map(function (p) { return Date.parse(p.length === 7 ? p + "-01" : p) / 1000; });
    var colors = ["#2f6fed", "#12b76a", "#f79009", "#7a5af8", "#f04438", "#0ba5ec"];
    var opts = {
      title: title, width: Math.max(280, b.clientWidth - 4), height: 240,
      series: [{}].concat(series.map(function (s, i) { return { label: s[0], stroke: colors[i % colors.length], width: 2 }; })),
      axes: [{}, { size: 60 }]
    };
    charts.push(new uPlot(opts, [xs].concat(series.map(function (s) { return s[1]; })), box));
  }

  function range() {
    var q = "from=" + $("#from").value + "&to=" + $("#to").value + "&granularity=" + $("#granularity").value;
    if ($("#partner").value) { q += "&partner_id=" + encodeURIComponent($("#partner").value); }
    return q;
  }

  function panel(name, path, render) {
    state(name, "loading", "Loading…");
    return api(path).then(function (data) { render(data); }).catch(function (err) {
      state(name, "error", "Could not load: " + err.message);
    });
  }

  function load() {
    charts.forEach(function (c) { c.destroy(); });
    charts = [];
    var pid = $("#program").value;
    var base = "/v1/programs/" + encodeURIComponent(pid) + "/analytics/";
    var q = range();
    panel("funnel", base + "funnel?" + q, function (d) {
      var s = d.series;
      var any = s.some(function (r) { return r.clicks || r.signups || r.leads || r.first_purchases || r.repeat_purchases; });
      if (!any) { state("funnel", "empty", "No activity in this range."); state("rate", "empty", "No new customers in this range."); state("delivery", "empty", "No notifications in this range."); return; }
      var p = s.map(function (r) { return r.period; });
      var col = function (k) { return s.map(function (r) { return r[k]; }); };
      chart("funnel", "", p, [["Link clicks", col("clicks")], ["Signups", col("signups")], ["Leads", col("leads")],
        ["First purchases", col("first_purchases")], ["Repeat purchases", col("repeat_purchases")]]);
      var first = 0, referred = 0, sent = 0, failed = 0, skipped = 0;
      s.forEach(function (r) { first += r.first_purchases; referred += r.first_purchases_referred; sent += r.notifications_sent || 0; failed += r.notifications_failed || 0; skipped += r.notifications_skipped || 0; });
      if (first) {
        var b = body("rate");
        b.replaceChildren(el("p", { "class": "big", text: pct(referred / first) }),
          el("p", { "class": "muted", text: fmt(referred) + " of " + fmt(first) + " new customers came referred" }), el("div", { "class": "chart" }));
        b.parentNode.setAttribute("data-state", "ready");
        var box = b.lastChild;
        charts.push(new uPlot({ width: Math.max(260, b.clientWidth - 4), height: 150, series: [{}, { label: "Referral rate", stroke: "#12b76a", width: 2 }], axes: [{}, { size: 50 }] },
          [p.map(function (x) { return Date.parse(x.length === 7 ? x + "-01" : x) / 1000; }), s.map(function (r) { return r.referral_rate; })], box));
      } else { state("rate", "empty", "No new customers in this range."); }
      if (sent + failed + skipped) {
        done("delivery", [table([["Status", function (r) { return r[0]; }], ["Messages", function (r) { return fmt(r[1]); }]],
          [["sent", sent], ["failed", failed], ["skipped", skipped]])]);
      } else { state("delivery", "empty", "No notifications in this range."); }
    });
    panel("kfactor", base + "kfactor?" + q, function (d) {
      if (!d.clicks && !d.referred_first_purchases) { state("kfactor", "empty", "No invites in this range."); return; }
      var fig = function (label, value) { return el("div", {}, [el("span", { text: label }), el("b", { "class": "big", text: value })]); };
      done("kfactor", [el("div", { "class": "figures" }, [
        fig("K-factor", d.k_factor === null ? "—" : d.k_factor.toFixed(2)),
        fig("Invites per member", d.invites_per_member === null ? "—" : d.invites_per_member.toFixed(2)),
        fig("Invite conversion", pct(d.invite_conversion)),
        fig("Viral cycle (median)", d.cycle_time_median_days === null ? "—" : "≤ " + d.cycle_time_median_days + " d")])]);
    });
    panel("cohorts", base + "cohorts?" + q, function (d) {
      if (!d.rows.length) { state("cohorts", "empty", "No customers in this range."); return; }
      done("cohorts", [table([["Join month", function (r) { return r.cohort; }], ["Group", function (r) { return r.referred ? "referred" : "other"; }],
        ["Customers", function (r) { return fmt(r.customers); }], ["Orders", function (r) { return fmt(r.orders); }],
        ["Revenue", function (r) { return money(r.revenue); }], ["Avg order", function (r) { return money(r.average_order); }],
        ["Repeat rate", function (r) { return pct(r.repeat_rate); }]], d.rows)]);
    });
    panel("roi", base + "roi?" + q, function (d) {
      if (!d.partners.length && !d.rules.length) { state("roi", "empty", "No rewards or referred orders in this range."); return; }
      done("roi", [table([["Partner", function (r) { return partnerName(r.partner_id); }], ["Referred revenue", function (r) { return money(r.referred_revenue); }],
        ["Reward cost", function (r) { return money(r.reward_cost); }], ["ROI", function (r) { return r.roi === null ? "—" : r.roi.toFixed(2) + "×"; }]], d.partners),
        table([["Rule", function (r) { return r.rule_id; }], ["Funded by", function (r) { return partnerName(r.funding_partner_id); }],
          ["Rewards", function (r) { return fmt(r.rewards); }], ["Cost", function (r) { return money(r.reward_cost); }]], d.rules)]);
    });
    var month = $("#to").value.slice(0, 7);
    panel("leaderboard", base + "leaderboard?period=" + month + "&limit=10", function (d) {
      if (!d.rows.length) { state("leaderboard", "empty", "Nobody converted a friend in " + month + "."); return; }
      done("leaderboard", [table([["#", function (r) { return String(r.rank); }], ["Ambassador", function (r) { return r.name + " (" + r.code + ")"; }],
        ["Friends", function (r) { return fmt(r.score); }]], d.rows)]);
    });
    panel("channels", base + "channels?" + q, function (d) {
      var rows = d.rows.filter(function (r) { return r.dimension !== "utm" || r.signups || r.first_purchases; });
      if (!rows.length) { state("channels", "empty", "No channel data in this range."); return; }
      done("channels", [table([["Channel", function (r) { return r.dimension.replace("_", " ") + ": " + r.value; }],
        ["Clicks", function (r) { return fmt(r.clicks); }], ["Signups", function (r) { return fmt(r.signups); }],
        ["First purchases", function (r) { return fmt(r.first_purchases); }]], rows)]);
    });
    panel("review", "/v1/programs/" + encodeURIComponent(pid) + "/review?limit=100", function (d) {
      var n = d.items.length;
      done("review", [el("p", { "class": "big", text: n + (d.next_cursor ? "+" : "") }),
        el("p", { "class": "muted", text: n === 1 ? "reward held for review" : "rewards held for review" })]);
    });
  }

  function showDashboard(programs) {
    $("#signin").hidden = true;
    $("#panels").hidden = false;
    $("#filters").hidden = false;
    var select = $("#program");
    select.replaceChildren.apply(select, programs.map(function (p) { return el("option", { value: p.program_id, text: p.name }); }));
    var today = new Date();
    var start = new Date(today.getTime() - 27 * 86400000);
    $("#to").value = today.toISOString().slice(0, 10);
    $("#from").value = start.toISOString().slice(0, 10);
    return loadPartners().then(load);
  }

  function loadPartners() {
    return api("/v1/programs/" + encodeURIComponent($("#program").value) + "/partners").then(function (d) {
      var s = $("#partner");
      d.items.forEach(function (p) { partnerNames[p.partner_id] = p.name; });
      s.replaceChildren.apply(s, [el("option", { value: "", text: "All partners" })].concat(
        d.items.map(function (p) { return el("option", { value: p.partner_id, text: p.name }); })));
    }).catch(function () { /* a partner key may not list partners: the filter stays "all" */ });
  }

  function signIn() {
    return api("/v1/programs").then(function (d) {
      if (!d.items.length) { throw new Error("This key has no program yet"); }
      return showDashboard(d.items);
    }).catch(function (err) {
      sessionStorage.removeItem(KEY);
      $("#signin").hidden = false;
      $("#panels").hidden = true;
      $("#filters").hidden = true;
      var box = $("#signin-error");
      box.textContent = err.status === 401 || err.status === 403 ?
        "This key was not accepted (" + err.status + "): check it and sign in again." : "Sign-in failed: " + err.message;
      box.hidden = false;
    });
  }

  $("#signin-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var key = $("#key").value.trim();
    $("#key").value = "";
    if (!key) { return; }
    sessionStorage.setItem(KEY, key);
    $("#signin-error").hidden = true;
    signIn();
  });
  $("#filters").addEventListener("submit", function (e) { e.preventDefault(); load(); });
  $("#program").addEventListener("change", function () { loadPartners().then(load); });
  $("#signout").addEventListener("click", function () { sessionStorage.removeItem(KEY); location.reload(); });
  if (sessionStorage.getItem(KEY)) { signIn(); }
})();

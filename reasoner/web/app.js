// The cptkg page: named queries, a SPARQL editor, results with CSV download, a code lookup, and
// derivation of a pasted encounter. Plain JavaScript, no build step, nothing loaded from elsewhere.
"use strict";

const PREFIXES = {
  "https://w3id.org/cptkg/vocab#": "cptkg:", "https://w3id.org/cptkg/code/": "cpt:",
  "https://w3id.org/cptkg/rule/": "rule:", "https://w3id.org/cptkg/source/": "src:",
  "https://w3id.org/cptkg/edit/": "edit:", "https://w3id.org/cptkg/kind/": "kind:",
  "https://w3id.org/cptkg/modality/": "modality:", "https://w3id.org/cptkg/family/": "fam:",
  "https://w3id.org/cptkg/graph/": "graph:", "http://www.w3.org/2004/02/skos/core#": "skos:",
  "http://purl.org/dc/terms/": "dcterms:",
};
const CODE_RE = /^(\d{4}[0-9A-Z])$/;
const $ = (id) => document.getElementById(id);
let queries = [];
let lastRequest = null;  // {url, options, name}: repeated with Accept: text/csv for the download

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const token = $("token").value.trim();
  if (token) h["Authorization"] = "Bearer " + token;
  return h;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function shorten(iri) {
  for (const [ns, p] of Object.entries(PREFIXES)) if (iri.startsWith(ns)) return p + iri.slice(ns.length);
  return iri;
}

function codeLink(code) {
  const token = $("token").value.trim();
  const a = el("a", {href: "/code/" + encodeURIComponent(code) + (token ? "?access_token=" + encodeURIComponent(token) : ""),
                     "data-code": code, text: code});
  return a;
}

function cell(term) {
  if (!term) return "";
  if (term.type === "uri") {
    const short = shorten(term.value);
    const m = short.match(/^cpt:(.+)$/);
    return m ? codeLink(m[1]) : short;
  }
  if (CODE_RE.test(term.value)) return codeLink(term.value);
  return term.value;
}

function status(text, isError) {
  const s = $("result-status");
  s.textContent = text;
  s.className = isError ? "error" : "";
}

async function runRequest(url, options, name) {
  status("Running " + (name || "query") + " ...");
  $("results").replaceChildren();
  $("download-csv").disabled = true;
  const t0 = performance.now();
  let resp;
  try {
    resp = await fetch(url, options);
  } catch (err) {
    status("The endpoint did not answer: " + err, true);
    return;
  }
  const ms = Math.round(performance.now() - t0);
  const ctype = (resp.headers.get("Content-Type") || "").split(";")[0];
  if (!resp.ok) {
    status("Error " + resp.status + ": " + (await resp.text()), true);
    return;
  }
  lastRequest = {url, options, name};
  const truncated = resp.headers.get("X-Cptkg-Truncated") === "true";
  const capNote = truncated ? " (stopped at the result cap of " + resp.headers.get("X-Cptkg-Result-Cap") + "; add LIMIT / OFFSET)" : "";
  if (ctype === "application/sparql-results+json") {
    const doc = await resp.json();
    if ("boolean" in doc) {
      status("ASK: " + doc.boolean + " (" + ms + " ms)");
      $("results").append(el("p", {id: "ask-answer", text: String(doc.boolean)}));
      return;
    }
    const vars = doc.head.vars;
    const rows = doc.results.bindings;
    const table = el("table", {id: "results-table"});
    table.append(el("thead", {}, el("tr", {}, ...vars.map((v) => el("th", {text: v})))));
    const body = el("tbody");
    for (const b of rows) body.append(el("tr", {}, ...vars.map((v) => el("td", {}, cell(b[v])))));
    table.append(body);
    $("results").append(table);
    status(rows.length + " rows (" + ms + " ms)" + capNote);
    $("download-csv").disabled = false;
  } else {
    const text = await resp.text();
    $("results").append(el("pre", {id: "results-graph", text}));
    status("Graph as " + ctype + " (" + ms + " ms)" + capNote);
  }
}

function runSparql() {
  const query = $("editor").value;
  runRequest("/sparql", {
    method: "POST",
    headers: headers({"Content-Type": "application/x-www-form-urlencoded",
                      "Accept": "application/sparql-results+json, text/turtle;q=0.9"}),
    body: new URLSearchParams({query}).toString(),
  }, "query");
}

function selected() {
  return queries.find((q) => q.id === $("query-select").value);
}

function paramValues() {
  const out = new URLSearchParams();
  for (const input of $("params").querySelectorAll("input")) out.set(input.name, input.value);
  return out;
}

function showParams() {
  const q = selected();
  $("params").replaceChildren();
  if (!q) return;
  $("query-description").textContent = q.title + ". " + (q.description || "");
  for (const p of q.params) {
    const input = el("input", {name: p.name, id: "param-" + p.name, size: "14",
                              value: p.default === null || p.default === undefined ? "" : p.default});
    $("params").append(el("label", {}, p.name + " ", input, " ", el("small", {text: "(" + p.type + ") " + p.description})));
  }
}

function runNamed() {
  const q = selected();
  if (!q) return;
  const params = paramValues();
  runRequest("/queries/" + encodeURIComponent(q.id) + (params.toString() ? "?" + params : ""),
             {headers: headers({"Accept": "application/sparql-results+json"})}, q.id);
}

function editNamed() {
  const q = selected();
  if (!q) return;
  let text = q.text;
  const names = [], terms = [];
  for (const p of q.params) {
    const v = $("param-" + p.name).value.trim();
    if (!v || v === "*") continue;
    names.push("?" + p.name);
    if (p.type === "code") terms.push("<https://w3id.org/cptkg/code/" + v.toUpperCase() + ">");
    else if (p.type === "date") terms.push('"' + v + '"^^<http://www.w3.org/2001/XMLSchema#date>');
    else if (p.type === "integer") terms.push(v);
    else if (p.type === "iri") terms.push(v.includes("://") ? "<" + v + ">" : v);
    else terms.push(JSON.stringify(v));
  }
  if (names.length) {
    const m = /\bWHERE\s*\{/i.exec(text);
    if (m) {
      const at = m.index + m[0].length;
      text = text.slice(0, at) + "\n  VALUES (" + names.join(" ") + ") { (" + terms.join(" ") + ") }" + text.slice(at);
    }
  }
  $("editor").value = text;
  $("editor").focus();
}

async function downloadCsv() {
  if (!lastRequest) return;
  const options = Object.assign({}, lastRequest.options);
  options.headers = Object.assign({}, options.headers, {"Accept": "text/csv"});
  const resp = await fetch(lastRequest.url, options);
  if (!resp.ok) { status("CSV download failed: " + resp.status, true); return; }
  const blob = await resp.blob();
  const a = el("a", {href: URL.createObjectURL(blob), download: (lastRequest.name || "results") + ".csv"});
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

function ruleLine(rule) {
  const srcs = (rule.sources || []).map((s) => s.title || s.id).join("; ");
  return el("div", {class: "rule", text: "rule " + rule.id + ": " + rule.title + (srcs ? " [source: " + srcs + "]" : "")});
}

function showDerivation(doc) {
  const out = $("derive-output");
  out.replaceChildren();
  for (const enc of doc.encounters) {
    const box = el("div", {class: "encounter", "data-encounter": enc.id});
    box.append(el("h3", {text: "Encounter " + enc.id + (enc.dateOfService ? " (" + enc.dateOfService + ")" : "")}));
    if (enc.error) {
      const e = enc.error;
      box.append(el("p", {class: "error", text: "Cannot derive: " + e.error + (e.field ? " (field " + e.field + ")" : "")}));
      out.append(box);
      continue;
    }
    if (!enc.codes.length) box.append(el("p", {text: "Report: no code"}));
    for (const c of enc.codes) {
      const line = el("div", {class: "code-line reported", "data-code": c.code});
      const mods = c.modifiers.map((m) => "-" + m).join("");
      line.append("Report ", el("span", {class: "code"}, codeLink(c.code)), mods + (c.units !== 1 ? " x" + c.units : "") + "  " + (c.label || ""));
      for (const r of c.rules) line.append(ruleLine(r));
      for (const m of c.modifierReasons) line.append(el("div", {class: "rule", text: "modifier " + m.reason}));
      box.append(line);
    }
    if (enc.notReported.length) {
      box.append(el("h4", {text: "Considered, not reported"}));
      for (const c of enc.notReported) {
        const line = el("div", {class: "code-line not-reported", "data-code": c.code});
        line.append(el("span", {class: "code"}, codeLink(c.code)), (c.replacedBy ? " (replaced by " + c.replacedBy + ")" : ""));
        for (const r of c.reasons) {
          line.append(el("div", {class: "rule", text: r.reason + (r.rules.length ? "  (rule " + r.rules.map((x) => x.id).join(", ") + ")" : "")}));
        }
        box.append(line);
      }
    }
    out.append(box);
  }
}

async function derive() {
  const s = $("derive-status");
  let doc;
  try {
    doc = JSON.parse($("derive-input").value);
  } catch (err) {
    s.textContent = "Not JSON: " + err.message;
    s.className = "error";
    return;
  }
  s.textContent = "Deriving ...";
  s.className = "";
  const t0 = performance.now();
  const resp = await fetch("/derive", {method: "POST", headers: headers({"Content-Type": "application/json"}),
                                       body: JSON.stringify(doc)});
  if (!resp.ok) {
    s.textContent = "Error " + resp.status + ": " + (await resp.text());
    s.className = "error";
    return;
  }
  const result = await resp.json();
  showDerivation(result);
  s.textContent = "Derived " + result.encounters.length + " encounter(s) in " + Math.round(performance.now() - t0) + " ms.";
}

async function loadQueries() {
  const resp = await fetch("/queries", {headers: headers({"Accept": "application/json"})});
  if (!resp.ok) {
    status("Cannot list the named queries: " + resp.status + " " + (await resp.text()), true);
    return;
  }
  queries = (await resp.json()).queries;
  const select = $("query-select");
  select.replaceChildren(...queries.map((q) => el("option", {value: q.id, text: q.id + ": " + q.title})));
  showParams();
  document.body.dataset.ready = "queries";
}

async function loadExample() {
  if ($("derive-input").value.trim()) return;
  try {
    const resp = await fetch("/derive/example");
    if (resp.ok) $("derive-input").value = JSON.stringify(await resp.json(), null, 2);
  } catch (err) { /* the example is a convenience */ }
}

function init() {
  $("endpoint").textContent = location.origin + "/sparql";
  $("token").value = sessionStorage.getItem("cptkg-token") || "";
  $("token").addEventListener("change", () => { sessionStorage.setItem("cptkg-token", $("token").value); loadQueries(); });
  $("query-select").addEventListener("change", showParams);
  $("run-named").addEventListener("click", runNamed);
  $("edit-named").addEventListener("click", editNamed);
  $("run-sparql").addEventListener("click", runSparql);
  $("editor").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) runSparql(); });
  $("download-csv").addEventListener("click", downloadCsv);
  $("derive-run").addEventListener("click", derive);
  $("code-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const code = $("code-input").value.trim().toUpperCase();
    if (code) location.href = codeLink(code).getAttribute("href");
  });
  loadQueries();
  loadExample();
}

document.addEventListener("DOMContentLoaded", init);

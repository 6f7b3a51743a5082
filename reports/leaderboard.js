// harness leaderboard: sorting, per-task and per-model views, run details, sample browser.
// Text from models and data is only ever set with textContent (never innerHTML).
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("board-data").textContent);
  var PAGE = 50;
  var rowsByKey = {};
  data.rows.forEach(function (r) { rowsByKey[r.key] = r; });
  var taskByName = {};
  data.tasks.forEach(function (t) { taskByName[t.name] = t; });

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function fmt(v) {
    if (v === null || v === undefined || v === "") return "–";
    var a = Math.abs(v);
    return a >= 1000 ? v.toFixed(1) : a >= 10 ? v.toFixed(2) : v.toFixed(4);
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function option(select, value, text) { var o = el("option", text); o.value = value; select.appendChild(o); }

  // ------------------------------------------------------------------ views
  var buttons = document.querySelectorAll("nav button");
  function show(view) {
    buttons.forEach(function (b) { b.classList.toggle("active", b.dataset.view === view); });
    document.querySelectorAll(".view").forEach(function (s) { s.hidden = s.id !== "view-" + view; });
  }
  buttons.forEach(function (b) { b.addEventListener("click", function () { show(b.dataset.view); }); });

  // ------------------------------------------------------------------ sorting
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.addEventListener("click", function () {
        var desc = th.dataset.dir !== "desc";
        Array.prototype.forEach.call(heads, function (h) { delete h.dataset.dir; });
        th.dataset.dir = desc ? "desc" : "asc";
        var numeric = th.dataset.type === "num";
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
          if (x === "" && y === "") return 0;
          if (x === "") return 1;  // missing scores last, either direction
          if (y === "") return -1;
          var c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
          return desc ? -c : c;
        });
        var frag = document.createDocumentFragment();
        rows.forEach(function (r) { frag.appendChild(r); });
        body.appendChild(frag);
      });
    });
  });

  // ------------------------------------------------------------------ metric groups (HELM's tabs)
  var groupButtons = document.querySelectorAll(".groups button[data-group]");
  groupButtons.forEach(function (b) {
    b.addEventListener("click", function () {
      groupButtons.forEach(function (x) { x.classList.toggle("active", x === b); });
      document.querySelectorAll("#view-board .group").forEach(function (g) { g.hidden = g.id !== "group-" + b.dataset.group; });
      document.getElementById("cell-detail").hidden = true;  // it showed a cell of another group
    });
  });

  // ------------------------------------------------------------------ downloads (no network: a Blob)
  function download(name, text, type) {
    var url = URL.createObjectURL(new Blob([text], {type: type}));
    var a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    document.body.removeChild(a);
    setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
  }
  // every cell of every group, one object each, in the columns of harness.load_runs (see holistic.py)
  function downloadRows() {
    var d = data.downloads;
    return d.rows.map(function (values) {
      var merged = {}, run = d.runs[values[0]];
      d.run_columns.forEach(function (c, i) { merged[c] = run[i]; });
      d.row_columns.forEach(function (c, i) { merged[c] = values[i]; });
      var row = {};
      d.columns.forEach(function (c) { row[c] = merged[c] === undefined ? null : merged[c]; });
      return row;
    });
  }
  function csvField(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "boolean") return v ? "True" : "False";  // as Python's csv writes them; pandas reads both
    var s = String(v);  // numbers: the shortest text that reads back as the same double, as Python's repr
    return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  document.getElementById("download-csv").addEventListener("click", function () {
    var columns = data.downloads.columns;
    var lines = [columns.join(",")].concat(downloadRows().map(function (r) {
      return columns.map(function (c) { return csvField(r[c]); }).join(",");
    }));
    download("leaderboard.csv", lines.join("\n") + "\n", "text/csv");
  });
  document.getElementById("download-json").addEventListener("click", function () {
    download("leaderboard.json", JSON.stringify(downloadRows(), null, 1), "application/json");
  });

  // ------------------------------------------------------------------ run behind a cell
  var detail = document.getElementById("cell-detail");
  var EFFICIENCY = [["seconds per 1,000 docs", "seconds_per_1k_docs"], ["tokens per second", "tokens_per_second"],
    ["model seconds", "model_seconds"], ["prompt tokens", "prompt_tokens"], ["generated tokens", "generated_tokens"],
    ["tokens computed", "tokens_computed"], ["requests (computed / from cache)", null], ["device", "device"],
    ["latency p50 / p95 (s)", null]];
  document.getElementById("view-board").addEventListener("click", function (ev) {
    var td = ev.target.closest("td[data-cell]");
    if (!td) return;
    var group = td.closest("table").dataset.group || "accuracy";
    var parts = td.dataset.cell.split("|"), row = rowsByKey[parts[0]], task = parts.slice(1).join("|");
    var cell = row.groups[group][task], run = data.runs[cell.run] || {};
    clear(detail);
    detail.appendChild(el("h3", row.label + " · " + task + " · " + group));
    var dl = el("dl");
    var x = cell.extra;
    var figures = x ? EFFICIENCY.map(function (f) {
      if (f[1]) return [f[0], typeof x[f[1]] === "number" && !Number.isInteger(x[f[1]]) ? fmt(x[f[1]]) : x[f[1]]];
      if (f[0].indexOf("requests") === 0) return [f[0], x.requests_computed + " / " + x.requests_from_cache];
      return [f[0], x.latency_p50_s === null ? "–" : fmt(x.latency_p50_s) + " / " + fmt(x.latency_p95_s)];
    }) : [];
    figures.concat([["score", fmt(cell.v) + " " + cell.metric], ["95% interval", cell.ci ? fmt(cell.ci[0]) + " – " + fmt(cell.ci[1]) : "–"],
     ["stderr", fmt(cell.se)], ["samples", cell.n], ["run", cell.run], ["started", run.created],
     ["spec hash", run.spec_sha256], ["weights sha256", (run.model || {}).sha256], ["dtype / device", ((run.model || {}).dtype || "") + " / " + ((run.model || {}).device || "")],
     ["settings", JSON.stringify(run.settings || {})], ["libraries", JSON.stringify(run.libraries || {})], ["seconds", run.seconds]])
      .forEach(function (kv) { dl.appendChild(el("dt", kv[0])); dl.appendChild(el("dd", kv[1] === undefined ? "–" : kv[1])); });
    detail.appendChild(dl);
    var go = el("button", "browse its samples");
    go.addEventListener("click", function () { openSamples(row.key, task); });
    detail.appendChild(go);
    detail.hidden = false;
  });

  // ------------------------------------------------------------------ charts (SVG, no library)
  var SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }
  // bars: [{label, v, ci}]: horizontal bars with error bars for the 95 % interval
  function barChart(target, bars) {
    clear(target);
    if (!bars.length) { target.appendChild(el("p", "no scores", "hint")); return; }
    var max = 0;
    bars.forEach(function (b) { max = Math.max(max, b.v, b.ci ? b.ci[1] : 0); });
    max = max > 0 ? max : 1;
    var labelW = 260, plotW = 420, rowH = 22, h = bars.length * rowH + 24;
    var s = svg("svg", {width: labelW + plotW + 80, height: h, role: "img"});
    bars.forEach(function (b, i) {
      var y = i * rowH + 4, x = function (v) { return labelW + Math.max(0, v) / max * plotW; };
      s.appendChild(svg("text", {x: labelW - 6, y: y + 14, "text-anchor": "end", class: "label"}, b.label));
      s.appendChild(svg("rect", {x: labelW, y: y + 3, width: Math.max(1, x(b.v) - labelW), height: rowH - 8, class: "bar"}));
      if (b.ci) {
        var cy = y + rowH / 2 - 1;
        s.appendChild(svg("line", {x1: x(b.ci[0]), x2: x(b.ci[1]), y1: cy, y2: cy, class: "err"}));
        s.appendChild(svg("line", {x1: x(b.ci[0]), x2: x(b.ci[0]), y1: cy - 5, y2: cy + 5, class: "err"}));
        s.appendChild(svg("line", {x1: x(b.ci[1]), x2: x(b.ci[1]), y1: cy - 5, y2: cy + 5, class: "err"}));
      }
      s.appendChild(svg("text", {x: labelW + plotW + 8, y: y + 14, class: "value"}, fmt(b.v)));
    });
    target.appendChild(s);
  }
  function fillTable(table, head, rows) {
    clear(table);
    var tr = el("tr");
    head.forEach(function (h) { tr.appendChild(el("th", h)); });
    table.appendChild(el("thead")).appendChild(tr);
    var body = el("tbody");
    rows.forEach(function (r) {
      var row = el("tr");
      r.forEach(function (c) { row.appendChild(el("td", c)); });
      body.appendChild(row);
    });
    table.appendChild(body);
  }

  var taskSelect = document.getElementById("task-select");
  data.tasks.forEach(function (t) { option(taskSelect, t.name, t.name + (t.top_level ? "" : " (member)")); });
  function renderTask() {
    var t = taskByName[taskSelect.value];
    if (!t) return;
    var sign = t.higher_is_better ? -1 : 1;
    var have = data.rows.filter(function (r) { return r.cells[t.name]; })
      .sort(function (a, b) { return sign * (a.cells[t.name].v - b.cells[t.name].v); });
    barChart(document.getElementById("task-chart"), have.map(function (r) {
      return {label: r.label, v: r.cells[t.name].v, ci: r.cells[t.name].ci};
    }));
    fillTable(document.getElementById("task-table"), ["model", t.metric, "95% interval", "n", "run"], have.map(function (r) {
      var c = r.cells[t.name];
      return [r.label, fmt(c.v), c.ci ? fmt(c.ci[0]) + " – " + fmt(c.ci[1]) : "–", c.n, c.run];
    }));
  }
  taskSelect.addEventListener("change", renderTask);

  var modelSelect = document.getElementById("model-select");
  data.rows.forEach(function (r) { option(modelSelect, r.key, r.label); });
  function renderModel() {
    var r = rowsByKey[modelSelect.value];
    if (!r) return;
    var names = Object.keys(r.cells).sort();
    barChart(document.getElementById("model-chart"), names.map(function (n) {
      return {label: n + " (" + r.cells[n].metric + ")", v: r.cells[n].v, ci: r.cells[n].ci};
    }));
    fillTable(document.getElementById("model-table"), ["task", "metric", "score", "95% interval", "n", "run"], names.map(function (n) {
      var c = r.cells[n];
      return [n, c.metric, fmt(c.v), c.ci ? fmt(c.ci[0]) + " – " + fmt(c.ci[1]) : "–", c.n, c.run];
    }));
    renderModelGroups(r);
  }
  var GROUP_HEADS = {accuracy: "accuracy", calibration: "calibration (ECE ↓)", robustness: "robustness (worst case)",
    fairness: "fairness (worst case)", efficiency: "efficiency (s / 1k docs ↓)"};
  function renderModelGroups(r) {
    var groups = Object.keys(data.groups), names = {};
    groups.forEach(function (g) { Object.keys(r.groups[g] || {}).forEach(function (n) { names[n] = true; }); });
    var rows = [["mean win rate"].concat(groups.map(function (g) { return fmt(r.winrates[g]); }), [""])];
    Object.keys(names).sort().forEach(function (n) {
      var eff = (r.groups.efficiency || {})[n];
      rows.push([n].concat(groups.map(function (g) {
        var c = (r.groups[g] || {})[n];
        return c ? fmt(c.v) + (g === "accuracy" ? " " + c.metric : "") : "–";
      }), [eff && eff.extra ? fmt(eff.extra.tokens_per_second) : "–"]));
    });
    fillTable(document.getElementById("model-groups"),
      ["task"].concat(groups.map(function (g) { return GROUP_HEADS[g] || g; }), ["tokens / s"]), rows);
  }
  modelSelect.addEventListener("change", renderModel);
  renderTask();
  renderModel();

  // ------------------------------------------------------------------ sample browser
  var sModel = document.getElementById("sample-model"), sTask = document.getElementById("sample-task");
  var sFilter = document.getElementById("sample-filter"), sSearch = document.getElementById("sample-search");
  var status = document.getElementById("sample-status"), pageInfo = document.getElementById("page-info");
  var sampleBody = document.querySelector("#sample-table tbody");
  var loaded = {};  // "row|task" -> samples
  var pending = {};  // chunks of "row|task" arriving from files beside the page
  var current = [], shown = [], page = 0;
  data.rows.forEach(function (r) { option(sModel, r.key, r.label); });
  function fillTasks() {
    clear(sTask);
    var r = rowsByKey[sModel.value];
    if (r) Object.keys(r.cells).sort().forEach(function (n) { option(sTask, n, n); });
  }

  function gunzipBase64(b64) {
    var bytes = Uint8Array.from(atob(b64), function (c) { return c.charCodeAt(0); });
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).text().then(JSON.parse);
  }
  // files beside the page (large stores) call this with one chunk each
  window.harnessSamples = function (key, index, b64) {
    var p = pending[key];
    if (p) { p.chunks[index] = b64; p.left -= 1; if (p.left === 0) p.done(); }
  };
  function chunksOf(key) {
    if (data.samples && data.samples[key]) return Promise.resolve(data.samples[key]);
    var files = data.sample_files && data.sample_files[key];
    if (!files) return Promise.resolve([]);
    return new Promise(function (resolve, reject) {
      pending[key] = {chunks: [], left: files.length, done: function () { resolve(pending[key].chunks); }};
      files.forEach(function (f) {
        var s = document.createElement("script");
        s.src = f;
        s.onerror = function () { reject(new Error("cannot read " + f)); };
        document.body.appendChild(s);
      });
    });
  }
  function load(key) {
    if (loaded[key]) return Promise.resolve(loaded[key]);
    return chunksOf(key).then(function (chunks) { return Promise.all(chunks.map(gunzipBase64)); })
      .then(function (parts) { loaded[key] = [].concat.apply([], parts); return loaded[key]; });
  }
  function applyFilter() {
    var q = sSearch.value.toLowerCase(), f = sFilter.value;
    shown = current.filter(function (s) {
      if (f === "correct" && s.correct !== true) return false;
      if (f === "incorrect" && s.correct !== false) return false;
      return !q || (s.prompt + "\u0000" + s.output + "\u0000" + s.target).toLowerCase().indexOf(q) >= 0;
    });
    page = 0;
    renderPage();
  }
  function renderPage() {
    clear(sampleBody);
    var pages = Math.max(1, Math.ceil(shown.length / PAGE));
    page = Math.min(page, pages - 1);
    shown.slice(page * PAGE, page * PAGE + PAGE).forEach(function (s) {
      var tr = el("tr", null, s.correct === true ? "right" : s.correct === false ? "wrong" : "");
      tr.appendChild(el("td", s.id));
      tr.appendChild(el("td", s.prompt, "text"));
      tr.appendChild(el("td", s.output, "text"));
      tr.appendChild(el("td", s.target, "text"));
      tr.appendChild(el("td", s.score === null || s.score === undefined ? "–" : s.metric + " " + fmt(s.score)));
      sampleBody.appendChild(tr);
    });
    pageInfo.textContent = "page " + (page + 1) + " of " + pages + " (" + shown.length + " of " + current.length + " samples)";
  }
  function openSamples(key, task) {
    show("samples");
    sModel.value = key;
    fillTasks();
    if (task) sTask.value = task;
    refresh();
  }
  function refresh() {
    var key = sModel.value + "|" + sTask.value;
    status.textContent = "loading…";
    load(key).then(function (samples) {
      current = samples;
      status.textContent = samples.length ? "" : "no samples stored for this cell";
      applyFilter();
    }, function (err) { status.textContent = String(err); current = []; applyFilter(); });
  }
  sModel.addEventListener("change", function () { fillTasks(); refresh(); });
  sTask.addEventListener("change", refresh);
  sFilter.addEventListener("change", applyFilter);
  var timer = null;
  sSearch.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(applyFilter, 150); });
  document.getElementById("page-prev").addEventListener("click", function () { if (page > 0) { page -= 1; renderPage(); } });
  document.getElementById("page-next").addEventListener("click", function () {
    if ((page + 1) * PAGE < shown.length) { page += 1; renderPage(); }
  });
  fillTasks();
  if (data.rows.length) refresh();
})();

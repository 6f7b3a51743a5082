// harness compare: flipped samples and differing outputs, side by side, paginated.
// Text from models and data is only ever set with textContent (never innerHTML).
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("compare-data").textContent);
  var PAGE = 50, rows = [], page = 0;
  var detail = document.getElementById("detail"), body = document.querySelector("#detail-table tbody");
  var info = document.getElementById("page-info");
  function cell(tr, text) { var td = document.createElement("td"); td.textContent = String(text); tr.appendChild(td); return td; }
  function render() {
    while (body.firstChild) body.removeChild(body.firstChild);
    var pages = Math.max(1, Math.ceil(rows.length / PAGE));
    rows.slice(page * PAGE, page * PAGE + PAGE).forEach(function (r) {
      var tr = document.createElement("tr");
      cell(tr, r.id);
      cell(tr, r.prompt).className = "text";
      cell(tr, r.target).className = "text";
      cell(tr, r.a_output).className = "text";
      cell(tr, r.b_output).className = "text";
      cell(tr, r.a_score);
      cell(tr, r.b_score);
      body.appendChild(tr);
    });
    info.textContent = "page " + (page + 1) + " of " + pages + " (" + rows.length + " samples)";
  }
  document.querySelectorAll("button.show").forEach(function (b) {
    b.addEventListener("click", function () {
      var cand = data[+b.dataset.cand], task = cand.tasks[+b.dataset.task];
      rows = task[b.dataset.kind];
      page = 0;
      document.getElementById("detail-title").textContent =
        cand.name + " · " + task.task + " · " + (b.dataset.kind === "flips" ? "flipped samples" : "outputs that differ");
      detail.hidden = false;
      render();
    });
  });
  document.getElementById("page-prev").addEventListener("click", function () { if (page > 0) { page -= 1; render(); } });
  document.getElementById("page-next").addEventListener("click", function () {
    if ((page + 1) * PAGE < rows.length) { page += 1; render(); }
  });
})();

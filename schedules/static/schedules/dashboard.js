// Refreshes the dashboard's "runs in progress" table from live.json every two seconds.
(function () {
  "use strict";
  var script = document.currentScript;
  var url = script.getAttribute("data-live-url");
  var tbody = document.querySelector("#active-runs tbody");
  var status = document.getElementById("live-status");
  var INTERVAL_MS = 2000;

  function size(bytes) {
    if (bytes === null || bytes === undefined) return "";
    var units = ["bytes", "KB", "MB", "GB", "TB"];
    var i = 0;
    while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
    return (i ? bytes.toFixed(1) : bytes) + "\u00a0" + units[i];
  }

  function cell(text, className) {
    var td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text;
    return td;
  }

  function row(run) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-run-id", run.id);
    var link = document.createElement("a");
    link.href = "/admin/schedules/importrun/" + run.id + "/change/";
    link.textContent = "#" + run.id;
    var first = document.createElement("td");
    first.appendChild(link);
    tr.appendChild(first);
    tr.appendChild(cell(run.import));
    tr.appendChild(cell(run.owner));
    tr.appendChild(cell(run.status, "status"));
    var progressCell = document.createElement("td");
    progressCell.innerHTML =
      '<div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="100">' +
      '<div class="fill"></div></div><span class="bytes"></span>';
    tr.appendChild(progressCell);
    tr.appendChild(cell(run.rows_read, "rows"));
    return tr;
  }

  function update(tr, run) {
    var bar = tr.querySelector(".progress");
    var known = run.percent !== null && run.percent !== undefined;
    bar.classList.toggle("unknown", !known && run.status === "running");
    bar.setAttribute("aria-valuenow", known ? run.percent : "");
    bar.querySelector(".fill").style.width = (known ? run.percent : 0) + "%";
    tr.querySelector(".bytes").textContent =
      size(run.bytes_read) + (run.bytes_total ? " / " + size(run.bytes_total) : "");
    tr.querySelector(".status").textContent = run.status;
    tr.querySelector(".rows").textContent = run.rows_read;
  }

  function render(data) {
    var seen = {};
    data.runs.forEach(function (run) {
      seen[run.id] = true;
      var tr = tbody.querySelector('tr[data-run-id="' + run.id + '"]');
      if (!tr) { tr = row(run); tbody.appendChild(tr); }
      update(tr, run);
    });
    Array.prototype.forEach.call(tbody.querySelectorAll("tr"), function (tr) {
      var id = tr.getAttribute("data-run-id");
      if (tr.classList.contains("empty")) { tr.hidden = data.runs.length > 0; return; }
      if (id && !seen[id]) tbody.removeChild(tr);
    });
    if (!tbody.querySelector("tr.empty") && !data.runs.length) {
      var empty = document.createElement("tr");
      empty.className = "empty";
      empty.innerHTML = '<td colspan="6">No run in progress.</td>';
      tbody.appendChild(empty);
    }
    status.textContent = "updated " + new Date(data.time).toLocaleTimeString();
    document.body.setAttribute("data-live-updates",
      String(Number(document.body.getAttribute("data-live-updates") || 0) + 1));
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(render)
      .catch(function (error) { status.textContent = "error: " + error.message; })
      .finally(function () { setTimeout(poll, INTERVAL_MS); });
  }

  poll();
})();

// The dashboard's live parts: runs in progress from live.json every two seconds, the health
// panel and the next runs from health.json every fifteen, and every <time datetime> shown in
// the viewer's own timezone (the server writes UTC; the UTC time stays on hover).
(function () {
  "use strict";
  var script = document.currentScript;
  var liveUrl = script.getAttribute("data-live-url");
  var healthUrl = script.getAttribute("data-health-url");
  var tbody = document.querySelector("#active-runs tbody");
  var status = document.getElementById("live-status");
  var LIVE_MS = 2000;
  var HEALTH_MS = 15000;
  // Phases without a measure of their own: the bar is full and the work goes on.
  var WORKING = { checks: true, merge: true };

  function pad(n) { return String(n).padStart(2, "0"); }

  function zoneName(date) {
    try {
      var parts = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" }).formatToParts(date);
      var zone = parts.filter(function (p) { return p.type === "timeZoneName"; })[0];
      return zone ? zone.value : "";
    } catch (error) { return ""; }
  }

  function localText(date) {
    return date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) +
      " " + pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds()) +
      " " + zoneName(date);
  }

  function relative(date) {
    var seconds = Math.round((date.getTime() - Date.now()) / 1000);
    var a = Math.abs(seconds);
    var text = a < 60 ? a + " s" : a < 3600 ? Math.round(a / 60) + " min" :
      a < 86400 ? Math.round(a / 3600) + " h" : Math.round(a / 86400) + " d";
    return seconds >= 0 ? "in " + text : text + " ago";
  }

  function localise(root) {
    Array.prototype.forEach.call((root || document).querySelectorAll("time[datetime]"), function (el) {
      var date = new Date(el.getAttribute("datetime"));
      if (isNaN(date.getTime())) return;
      if (!el.hasAttribute("data-local")) {
        el.title = date.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
        el.setAttribute("data-local", "1");
      }
      el.textContent = localText(date) +
        (el.hasAttribute("data-relative") ? " (" + relative(date) + ")" : "");
    });
  }

  function timeElement(iso, withRelative) {
    var el = document.createElement("time");
    if (!iso) return el;
    el.setAttribute("datetime", iso);
    if (withRelative) el.setAttribute("data-relative", withRelative);
    return el;
  }

  function size(bytes) {
    if (bytes === null || bytes === undefined) return "";
    var units = ["bytes", "KB", "MB", "GB", "TB"];
    var i = 0;
    while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
    return (i ? bytes.toFixed(1) : bytes) + "\u00a0" + units[i];
  }

  function cell(content, className) {
    var td = document.createElement("td");
    if (className) td.className = className;
    if (content instanceof Node) td.appendChild(content); else td.textContent = content;
    return td;
  }

  function link(href, text) {
    var a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    return a;
  }

  // --- runs in progress -----------------------------------------------------------------

  function row(run) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-run-id", run.id);
    tr.appendChild(cell(link(run.url, "#" + run.id)));
    tr.appendChild(cell(run.import));
    tr.appendChild(cell(run.owner));
    tr.appendChild(cell(run.status, "status"));
    var progressCell = document.createElement("td");
    progressCell.innerHTML =
      '<div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="100">' +
      '<div class="fill"></div><span class="phase"></span></div><span class="bytes"></span>';
    tr.appendChild(progressCell);
    tr.appendChild(cell(run.rows_read, "rows"));
    tr.appendChild(cell(timeElement(run.started_at, "ago"), "started"));
    return tr;
  }

  function update(tr, run) {
    var bar = tr.querySelector(".progress");
    var known = run.percent !== null && run.percent !== undefined;
    bar.classList.toggle("unknown", !known && run.status === "running" && !WORKING[run.phase]);
    bar.classList.toggle("working", Boolean(WORKING[run.phase]));
    bar.setAttribute("aria-valuenow", known ? run.percent : "");
    bar.querySelector(".fill").style.width = (known ? run.percent : 0) + "%";
    bar.querySelector(".phase").textContent = run.phase || "";
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
      empty.innerHTML = '<td colspan="7">No run in progress.</td>';
      tbody.appendChild(empty);
    }
    var attention = document.querySelector("#attention-imports tbody");
    if (attention && typeof data.attention_rows === "string") {
      attention.innerHTML = data.attention_rows;  // written and escaped by the server
    }
    var cut = document.getElementById("active-runs-cut");
    if (cut && typeof data.runs_total === "number") {
      cut.hidden = data.runs_total <= data.runs.length;
      cut.firstChild.textContent = "showing " + data.runs.length + " of " + data.runs_total +
        " (those running first, then the oldest waiting): ";
    }
    localise(document);
    status.textContent = "updated " + localText(new Date(data.time));
    document.body.setAttribute("data-live-updates",
      String(Number(document.body.getAttribute("data-live-updates") || 0) + 1));
  }

  // --- health and next runs ---------------------------------------------------------------

  function renderHealth(data) {
    var list = document.getElementById("health");
    list.textContent = "";
    data.health.forEach(function (item) {
      var li = document.createElement("li");
      li.className = "health-item " + item.state;
      li.setAttribute("data-check", item.name);
      li.innerHTML = '<span class="dot" aria-hidden="true"></span><strong></strong> <span class="text"></span>';
      li.querySelector("strong").textContent = item.name;
      li.querySelector(".text").textContent = item.text;
      if (item.time) {
        var when = document.createElement("span");
        when.className = "when";
        when.textContent = item.time_label + " ";
        when.appendChild(timeElement(item.time, "ago"));
        li.appendChild(when);
      }
      list.appendChild(li);
    });
    var upcoming = document.querySelector("#upcoming-runs tbody");
    upcoming.textContent = "";
    data.upcoming.forEach(function (imp) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-import-id", imp.id);
      tr.appendChild(cell(timeElement(imp.next_run_at, "in")));
      tr.appendChild(cell(link(imp.url, imp.name)));
      tr.appendChild(cell(imp.owner));
      tr.appendChild(cell(imp.schedule));
      upcoming.appendChild(tr);
    });
    if (!data.upcoming.length) {
      upcoming.innerHTML = '<tr class="empty"><td colspan="4">No run is scheduled.</td></tr>';
    }
    // The overdue imports the next runs could not place, as the page writes them (its one
    // writer, dashboard_rows.unplaced_note): they were left out without a word.
    var upcomingCut = document.getElementById("upcoming-cut");
    if (upcomingCut && typeof data.upcoming_cut === "string") {
      upcomingCut.innerHTML = data.upcoming_cut;
      upcomingCut.hidden = !data.unplaced;
    }
    localise(document);
    document.body.setAttribute("data-health-updates",
      String(Number(document.body.getAttribute("data-health-updates") || 0) + 1));
  }

  function poll(url, interval, onData, onError) {
    function once() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(onData)
        .catch(onError || function () {})
        .finally(function () { setTimeout(once, interval); });
    }
    once();
  }

  document.getElementById("viewer-zone").textContent =
    Intl.DateTimeFormat().resolvedOptions().timeZone || "your timezone";
  localise(document);
  poll(liveUrl, LIVE_MS, render, function (error) { status.textContent = "error: " + error.message; });
  setTimeout(function () { poll(healthUrl, HEALTH_MS, renderHealth); }, HEALTH_MS);
})();

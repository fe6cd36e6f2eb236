// Live updates of the workflow page: poll the JSON API until the workflow reaches a terminal status.
(function () {
  "use strict";
  var TERMINAL = ["completed", "failed", "rejected"];
  var INTERVAL_MS = 500;
  // Give up after ten minutes so a forgotten tab does not poll forever.
  var MAX_POLLS = 1200;
  var section = document.getElementById("workflow");
  if (!section) { return; }
  var apiUrl = section.getAttribute("data-api-url");
  var thumbnailUrl = section.getAttribute("data-thumbnail-url");
  var polls = 0;

  function setStatusClass(element, status) {
    element.className = element.className.replace(/\bstatus-[a-z-]+\b/g, "").trim() + " status-" + status;
  }

  function render(doc) {
    var status = section.querySelector('[data-testid="workflow-status"]');
    if (status.textContent !== doc.status) {
      status.textContent = doc.status;
      setStatusClass(status, doc.status);
    }
    var reason = section.querySelector('[data-testid="workflow-reason"]');
    reason.textContent = doc.reason || "";
    reason.hidden = !doc.reason;
    var steps = doc.steps || {};
    Object.keys(steps).forEach(function (agent) {
      var step = steps[agent] || {};
      var row = section.querySelector('tr[data-agent="' + CSS.escape(agent) + '"]');
      if (!row) { return; }
      row.setAttribute("data-status", step.status);
      var cell = row.querySelector('[data-testid="step-status"]');
      if (cell.textContent !== step.status) {
        cell.textContent = step.status;
        setStatusClass(cell, step.status);
      }
      row.querySelector('[data-testid="step-attempts"]').textContent = String(step.attempts || 0);
      row.querySelector('[data-testid="step-revision"]').textContent = step.revision || "";
      row.querySelector('[data-testid="step-error"]').textContent = step.error || "";
    });
    if (doc.status === "completed") { showThumbnail(); }
  }

  function showThumbnail() {
    var figure = document.getElementById("thumbnail");
    if (figure.querySelector("img")) { figure.hidden = false; return; }
    var img = document.createElement("img");
    img.alt = "Thumbnail";
    img.src = thumbnailUrl;
    figure.appendChild(img);
    figure.hidden = false;
  }

  function schedule() {
    polls += 1;
    if (polls <= MAX_POLLS) { window.setTimeout(poll, INTERVAL_MS); }
  }

  function poll() {
    fetch(apiUrl, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (response.status === 401) { window.location.reload(); return null; }
        return response.ok ? response.json() : null;
      })
      .then(function (doc) {
        if (doc) {
          render(doc);
          if (TERMINAL.indexOf(doc.status) !== -1) { return; }
        }
        schedule();
      })
      // A transient network error: keep polling, the next answer repaints everything.
      .catch(schedule);
  }

  if (section.getAttribute("data-terminal") !== "true") { schedule(); }
}());

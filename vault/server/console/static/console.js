// cvault console: the only script of the console (served from /static, no inline script).
// Reveal asks the server for one field by POST (never in a URL), with the page's CSRF token; a
// step-up prompt appears when the server answers stepup_required; copy clears the clipboard.
"use strict";
(function () {
  var CLEAR_AFTER_MS = 30000;
  var HIDE_AFTER_MS = 60000;
  function csrf() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute("content") : "";
  }
  function post(url, fields) {
    var body = new URLSearchParams(fields);
    body.set("csrf", csrf());
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      headers: { "Content-Type": "application/x-www-form-urlencoded", "X-CSRF-Token": csrf() },
      body: body.toString()
    }).then(function (r) {
      return r.json().then(function (data) { return { status: r.status, data: data }; });
    });
  }
  function show(el, text) { el.textContent = text; el.hidden = !text; }

  document.querySelectorAll("[data-print]").forEach(function (b) {
    b.addEventListener("click", function () { window.print(); });
  });

  var record = document.querySelector("dl.record");
  if (!record) { return; }
  var values = {};
  var pending = null;
  var problem = document.getElementById("problem");
  var stepup = document.getElementById("stepup");
  var stepupCode = document.getElementById("stepup-code");
  var stepupProblem = document.getElementById("stepup-problem");

  function mask(field) {
    delete values[field];
    document.getElementById("value-" + field).textContent = "••••••••";
    var copy = record.querySelector('button.copy[data-field="' + field + '"]');
    if (copy) { copy.hidden = true; }
  }
  function reveal(field) {
    show(problem, "");
    post("/reveal", { client: record.dataset.client, path: record.dataset.path, field: field })
      .then(function (res) {
        if (res.status === 200) {
          var v = res.data.value;
          values[field] = v === null ? "" : v;
          document.getElementById("value-" + field).textContent = v === null ? "(empty)" : v;
          var copy = record.querySelector('button.copy[data-field="' + field + '"]');
          if (copy && v !== null) { copy.hidden = false; }
          setTimeout(function () { mask(field); }, HIDE_AFTER_MS);
        } else if (res.data.error && res.data.error.code === "stepup_required") {
          pending = field;
          stepup.hidden = false;
          stepupCode.focus();
        } else {
          show(problem, res.data.error ? res.data.error.message : "refused");
        }
      })
      .catch(function () { show(problem, "the console did not answer"); });
  }
  record.querySelectorAll("button.reveal").forEach(function (b) {
    b.addEventListener("click", function () { reveal(b.dataset.field); });
  });
  record.querySelectorAll("button.copy").forEach(function (b) {
    b.addEventListener("click", function () {
      var v = values[b.dataset.field];
      if (v === undefined || !navigator.clipboard) { return; }
      navigator.clipboard.writeText(v).then(function () {
        show(document.getElementById("copied"), "Copied. The clipboard is cleared in 30 seconds.");
        setTimeout(function () {
          navigator.clipboard.writeText("").then(function () {
            show(document.getElementById("copied"), "Clipboard cleared.");
          }, function () {});
        }, CLEAR_AFTER_MS);
      });
    });
  });
  function submitStepUp() {
    show(stepupProblem, "");
    post("/step-up", { code: stepupCode.value }).then(function (res) {
      stepupCode.value = "";
      if (res.status === 200) {
        stepup.hidden = true;
        if (pending) { var f = pending; pending = null; reveal(f); }
      } else {
        show(stepupProblem, res.data.error ? res.data.error.message : "refused");
        stepupCode.focus();
      }
    });
  }
  document.getElementById("stepup-submit").addEventListener("click", submitStepUp);
  stepupCode.addEventListener("keydown", function (e) {
    if (e.key === "Enter") { e.preventDefault(); submitStepUp(); }
  });
})();

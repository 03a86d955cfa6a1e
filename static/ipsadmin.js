// Texts in the page's language: data-msg-* on #messages (base.html), read
// once at load (a swap may replace #messages), English when absent.
var ipsadminText = (function () {
  var box = document.getElementById("messages"), cache = {};
  return function (name, fallback) {
    if (!(name in cache)) cache[name] = box ? box.getAttribute("data-msg-" + name) : null;
    return cache[name] || fallback;
  };
})();

// Say something when a request fails in a way the server did not render.
(function () {
  function flash(text) {
    var box = document.getElementById("messages");
    if (!box) return;
    var p = document.createElement("p");
    p.className = "flash flash-error";
    p.setAttribute("role", "alert");
    p.textContent = text;
    box.replaceChildren(p);
  }
  document.addEventListener("htmx:responseError", function (e) {
    var xhr = e.detail.xhr;
    var id = xhr.getResponseHeader("X-Request-ID");
    var text = id
      ? ipsadminText("server-error-id", "The server could not complete this (HTTP {status}). Request id {id}. Nothing was lost: check History before trying again.")
      : ipsadminText("server-error", "The server could not complete this (HTTP {status}). Nothing was lost: check History before trying again.");
    // Functions as replacements: a "$" in the id stays literal.
    flash(text.replace("{status}", function () { return String(xhr.status); })
              .replace("{id}", function () { return id; }));
  });
  document.addEventListener("htmx:sendError", function () {
    flash(ipsadminText("send-error", "The dashboard could not be reached. Check your network, then History, before trying again."));
  });
})();

// Copy buttons (data-copy): IPS handles, whole and exact.
document.addEventListener("click", function (e) {
  var button = e.target.closest("button.copy[data-copy]");
  if (!button || !navigator.clipboard) return;
  navigator.clipboard.writeText(button.getAttribute("data-copy")).then(function () {
    button.textContent = ipsadminText("copied", "Copied");
    setTimeout(function () { button.textContent = ipsadminText("copy", "Copy"); }, 1500);
  });
});

// The browser's time zone, for pages to show times in it (jobs/timezones.py):
// kept in the "tz" cookie, written only when it changes. A zone chosen in
// Settings wins over it.
(function () {
  var zone;
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
  if (!zone) return;
  // IANA names (Europe/Zurich, America/Port-au-Prince) need no escaping in a cookie.
  if (!/^[A-Za-z0-9_+\/-]+$/.test(zone)) return;
  var current = document.cookie.split("; ").filter(function (c) { return c.indexOf("tz=") === 0; })[0];
  if (current && current.slice(3) === zone) return;
  document.cookie = "tz=" + zone + "; path=/; max-age=31536000; SameSite=Lax" +
    (location.protocol === "https:" ? "; Secure" : "");
})();


// Back asks the server for the page (History keeps no snapshot), and htmx
// swaps the answer whenever it arrives: after a second Back, a restore from
// the browser's copy, or a change that pushes a new address, a late answer
// would show rows the address no longer names. Whatever comes later wins:
// the pending restore is dropped.
(function () {
  var pending = null;
  function drop() {
    if (pending && pending.readyState !== XMLHttpRequest.DONE) pending.abort();
    pending = null;
  }
  document.addEventListener("htmx:historyCacheMiss", function (e) {
    drop();
    pending = e.detail.xhr;
  });
  document.addEventListener("htmx:historyCacheHit", drop);
  document.addEventListener("htmx:beforeRequest", function (e) {
    // Only requests that put a new address in the history (not polls, not suggestions).
    var pusher = e.detail.elt && e.detail.elt.closest && e.detail.elt.closest("[hx-push-url]");
    if (pusher && pusher.getAttribute("hx-push-url") !== "false") drop();
  });
})();

// The language switch returns to the address shown now, which htmx may have
// changed since the page loaded (History's filters push theirs).
(function () {
  function follow() {
    var next = document.querySelector("form.languages input[name=next]");
    if (next) next.value = location.pathname + location.search;
  }
  document.addEventListener("htmx:pushedIntoHistory", follow);
  document.addEventListener("htmx:replacedInHistory", follow);
  window.addEventListener("popstate", follow);
})();

// Active in IPS refreshes every job's Run/Stop cell (out of band) every few
// seconds. A cell whose press is still on its way is left alone: replaced,
// its form would leave the page, and htmx would then find neither #messages
// nor anything else for the press's answer (the answer replaces the row anyway).
document.addEventListener("htmx:oobBeforeSwap", function (e) {
  var target = e.detail.target;
  if (target && target.querySelector && target.querySelector(".htmx-request")) e.detail.shouldSwap = false;
});

// The page's one polite live region (base.html #announcer): what a press answered, a run's end.
// Emptied first, then filled a moment later, so the same words twice are said twice.
function ipsadminAnnounce(text) {
  var region = document.getElementById("announcer");
  if (!region || !text) return;
  region.textContent = "";
  setTimeout(function () { region.textContent = text; }, 50);
}
(function () {
  function flashText() {
    var box = document.getElementById("messages");
    return box ? box.textContent.replace(/\s+/g, " ").trim() : "";
  }
  // A press's message arrives out of band in a new #messages (with its row), or into #messages
  // itself (views.common._htmx_flash: a refusal, Stop from Active in IPS).
  document.addEventListener("htmx:oobAfterSwap", function (e) {
    if (e.detail.elt && e.detail.elt.id === "messages") ipsadminAnnounce(flashText());
  });
  document.addEventListener("htmx:afterSwap", function (e) {
    if (e.detail.target && e.detail.target.id === "messages") ipsadminAnnounce(flashText());
  });
  // The errors static/ipsadmin.js writes into #messages itself (they have role=alert), and a page
  // loaded with a message (a press without JavaScript) need nothing more: they are read as they come.
})();

// The in-page confirm (base.html <dialog id="confirm">) instead of the browser's confirm(): htmx
// asks (htmx:confirm); the request goes only after "Confirm". Esc or Cancel sends nothing; focus
// goes back to the button pressed.
(function () {
  var dialog = document.getElementById("confirm");
  var pending = null;  // the ask the dialog shows: {elt, button, issueRequest}
  if (!dialog || typeof dialog.showModal !== "function") return;
  // One listener: "close" comes a task after the dialog shut, so after an Esc and a quick second
  // press it may arrive with the dialog open again; that late one is not the answer to the new ask.
  dialog.addEventListener("close", function () {
    if (dialog.open || !pending) return;
    var p = pending;
    pending = null;
    if (p.elt.classList) p.elt.classList.remove("confirming");
    if (p.button && p.button.isConnected) p.button.focus();
    if (dialog.returnValue !== "ok") return;
    if (p.elt.isConnected) {
      ipsadminPressed(p.elt);
      p.issueRequest(true);
      return;
    }
    // The form left the page while it asked (a refresh the guards below did not stop): htmx would
    // drop the request without a word. The same action's form in the page now is sent instead.
    var url = p.elt.getAttribute && p.elt.getAttribute("hx-post");
    var again = url && Array.prototype.filter.call(document.querySelectorAll("form[hx-post]"), function (f) {
      return f.getAttribute("hx-post") === url;
    })[0];
    if (again && typeof again.requestSubmit === "function") {
      resend = again;
      ipsadminPressed(again);
      var button = again.querySelector("button[type=submit]");
      if (button) button.focus();
      again.requestSubmit(button || undefined);
    } else {
      var box = document.getElementById("messages");
      if (!box) return;
      var note = document.createElement("p");
      note.className = "flash flash-error";
      note.setAttribute("role", "alert");
      note.textContent = ipsadminText("not-sent", "Nothing was sent: the page changed while it asked. Check the run, then press again.");
      box.replaceChildren(note);
    }
  });
  var resend = null;  // a form sent again after Confirm: asked already, not asked twice
  document.addEventListener("htmx:confirm", function (e) {
    var question = e.detail.question;
    if (!question) return;
    e.preventDefault();
    if (resend && e.detail.elt === resend) {
      resend = null;
      e.detail.issueRequest(true);
      return;
    }
    if (dialog.open) return;  // one ask at a time
    var elt = e.detail.elt;
    var button = (elt.matches && elt.matches("button")) ? elt : elt.querySelector && elt.querySelector("button");
    var ok = document.getElementById("confirm-ok");
    if (!ok.hasAttribute("data-default")) ok.setAttribute("data-default", ok.textContent);
    // "Confirm" says the action's own verb when the button has one ("Run", "Stop").
    var verb = button && button.querySelector("[aria-hidden=true]");
    ok.textContent = verb && verb.textContent.trim() ? verb.textContent.trim() : ok.getAttribute("data-default");
    document.getElementById("confirm-question").textContent = question;
    dialog.returnValue = "";
    // While it asks, Active in IPS leaves the cell alone (below): the form must still be there to send.
    if (elt.classList) elt.classList.add("confirming");
    if (pending && pending.elt !== elt && pending.elt.classList) pending.elt.classList.remove("confirming");
    pending = { elt: elt, button: button, issueRequest: e.detail.issueRequest };
    dialog.showModal();
    // Cancel first: Enter alone never presses Run or Stop.
    dialog.querySelector("button[value=cancel]").focus();
  });
  document.addEventListener("htmx:oobBeforeSwap", function (e) {
    var target = e.detail.target;
    if (target && target.querySelector && target.querySelector(".confirming")) e.detail.shouldSwap = false;
  });
  // A poll of a part holding the control being asked about (the run page's #run-live, every 5 s)
  // is not sent, and an answer already on its way is not swapped, until the dialog closes.
  function asking(el) {
    return !!(pending && dialog.open && el && el.contains && (el.contains(pending.elt) || (el.querySelector && el.querySelector(".confirming"))));
  }
  document.addEventListener("htmx:beforeRequest", function (e) {
    if (e.detail.elt !== (pending && pending.elt) && asking(e.detail.elt)) e.preventDefault();
  });
  document.addEventListener("htmx:beforeSwap", function (e) {
    if (asking(e.detail.target)) e.detail.shouldSwap = false;
  });
})();

// A cell Active in IPS sends again unchanged (its job was read from IPS again) is left as it is:
// a control that is not replaced keeps its focus, and a Space pressed on it is not lost.
document.addEventListener("htmx:oobBeforeSwap", function (e) {
  var target = e.detail.target, fragment = e.detail.fragment;
  var fresh = fragment && fragment.firstElementChild;
  if (target && fresh && /^action-/.test(target.id || "") && fresh.isEqualNode(target)) e.detail.shouldSwap = false;
});

// After a press swaps a job's row (Run, Stop, Pause, Resume), or Active in IPS re-draws its
// action cell, focus goes to the new row's control that follows the one pressed: the new Stop
// after Run, Run after Stop, Resume after Pause; never left on <body>.
var ipsadminPressed = (function () {
  var NEXT = { run: ["stop", "run"], stop: ["run", "stop"], pause: ["resume", "pause"], resume: ["pause", "resume"] };
  var pressed = null;  // {elt, row, action}

  function actionOf(el) {
    var b = el && el.closest && el.closest("[data-action]");
    if (b) return b.getAttribute("data-action");
    var form = el && el.closest && el.closest("form");
    var inner = form && form.querySelector("[data-action]");
    return inner ? inner.getAttribute("data-action") : null;
  }

  function focusIn(container, action) {
    if (!container) return false;
    var order = (NEXT[action] || []).map(function (a) { return "[data-action=" + a + "]"; });
    order.push("td.action button", "a.job-name");
    for (var i = 0; i < order.length; i++) {
      var target = container.querySelector(order[i]);
      if (target) { target.focus(); return true; }
    }
    return false;
  }

  function lost() {
    var a = document.activeElement;
    return !a || a === document.body || !a.isConnected;
  }

  function remember(elt) {
    var row = elt && elt.closest && elt.closest("tr[id^=job-]");
    pressed = row ? { elt: elt, row: row.id, action: actionOf(elt) } : null;
  }

  // A press with no confirm question starts here; one with a question, after the dialog.
  document.addEventListener("htmx:beforeRequest", function (e) {
    var elt = e.detail.elt;
    if (elt && elt.matches && elt.matches("td.action form") && (!pressed || pressed.elt !== elt)) remember(elt);
  });
  document.addEventListener("htmx:afterSettle", function (e) {
    var from = e.detail.requestConfig && e.detail.requestConfig.elt;
    if (!pressed || from !== pressed.elt) return;
    var p = pressed;
    pressed = null;
    if (lost() || p.elt.contains(document.activeElement)) focusIn(document.getElementById(p.row), p.action);
  });

  // Active in IPS re-draws a cell while focus is in it: the same control, or its successor, keeps it.
  var redrawn = null;
  document.addEventListener("htmx:oobBeforeSwap", function (e) {
    var t = e.detail.target;
    if (e.detail.shouldSwap !== false && t && t.contains && t.contains(document.activeElement) && t.id) {
      redrawn = { cell: t.id, action: actionOf(document.activeElement) };
    }
  });
  document.addEventListener("htmx:oobAfterSwap", function () {
    if (!redrawn) return;
    var r = redrawn;
    redrawn = null;
    if (!lost()) return;
    var cell = document.getElementById(r.cell);
    var same = r.action && cell && cell.querySelector("[data-action=" + r.action + "]");
    if (same) same.focus();
    else focusIn(cell, r.action);
  });

  return remember;
})();

// A run's state and progress, in its row (the row's poll) and in Active in IPS (the panel's poll):
// whichever answered last is copied into the other, in the task of its swap, so that the two never disagree.
document.addEventListener("htmx:afterSwap", function (e) {
  var elt = e.detail.elt;
  if (!elt || !elt.querySelector) return;
  var row = elt.closest && elt.closest("tr[id^=job-]");
  if (row && elt.classList.contains("ips-status")) {
    var mine = elt.querySelector(".ips-progress");
    var other = mine && document.querySelector("table.active .ips-progress[data-job='" + row.id.slice(4) + "']");
    if (other) {
      var copy = mine.cloneNode(true);
      copy.setAttribute("data-job", row.id.slice(4));
      other.replaceWith(copy);
    }
    return;
  }
  elt.querySelectorAll("table.active .ips-progress[data-job]").forEach(function (fresh) {
    var stale = document.querySelector("#job-" + fresh.getAttribute("data-job") + " .ips-status .ips-progress");
    if (stale) {
      var copy = fresh.cloneNode(true);
      copy.removeAttribute("data-job");
      stale.replaceWith(copy);
    }
  });
});

// The run page's Stop answers into #messages; its button was disabled while the press went, so focus
// fell to <body>. It goes to the Status heading, which keeps it across the section's refreshes (same id).
(function () {
  var from = null;
  document.addEventListener("htmx:beforeRequest", function (e) {
    var elt = e.detail.elt;
    if (elt && elt.matches && elt.matches("#run-live form")) from = elt;
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    if (!from || e.detail.elt !== from) return;
    from = null;
    setTimeout(function () {
      var a = document.activeElement;
      if (a && a !== document.body && a.isConnected) return;
      var heading = document.getElementById("run-live-title");
      if (heading) heading.focus();
    }, 0);
  });
})();

// A run's end is said once: when Active in IPS's cell swap is skipped (a press on its way, a confirm
// open, nothing changed), the next poll sends the same end again; what was said is not said again.
(function () {
  var said = new Set();
  document.addEventListener("htmx:oobBeforeSwap", function (e) {
    var target = e.detail.target, fragment = e.detail.fragment;
    if (!target || target.id !== "announcer" || !fragment || !fragment.querySelectorAll) return;
    var lines = fragment.querySelectorAll("[data-said]");
    if (!lines.length) return;
    var fresh = 0;
    lines.forEach(function (line) {
      var key = line.getAttribute("data-said");
      if (said.has(key)) line.remove();
      else { said.add(key); fresh++; }
    });
    if (!fresh) e.detail.shouldSwap = false;
  });
})();

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

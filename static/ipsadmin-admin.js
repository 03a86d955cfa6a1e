// Names for what Django's admin scripts draw unnamed (issue 20, axe), loaded on every admin page:
// select2's box, which stands in for an autocomplete's select, gets the select's name (jobs/admin/labels.py
// gives it one); the filter icons of a many-to-many chooser (SelectFilter2.js) carry an aria-label on a
// span with no role, which ARIA does not allow: they are images, and are named so.
"use strict";
(function () {
  function selectName(select) {
    const named = select.getAttribute("aria-label");
    if (named) return named;
    const label = select.id && document.querySelector('label[for="' + CSS.escape(select.id) + '"]');
    return label ? label.textContent.trim().replace(/:$/, "") : "";
  }

  function nameAll(root) {
    root.querySelectorAll(".select2-selection__rendered[role=textbox]:not([aria-label])").forEach(function (box) {
      const select = document.getElementById(box.id.replace(/^select2-/, "").replace(/-container$/, ""));
      const name = select ? selectName(select) : "";
      if (name) box.setAttribute("aria-label", name);
    });
    root.querySelectorAll(".help-tooltip[aria-label]:not([role])").forEach(function (icon) {
      icon.setAttribute("role", "img");
    });
  }

  function start() {
    nameAll(document);
    // select2 and SelectFilter2 draw after load, and again for each inline row added.
    new MutationObserver(function () { nameAll(document); })
      .observe(document.body, {childList: true, subtree: true});
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

// Progressive enhancement only: every page works without this file.
// Forms (or submit buttons) with data-confirm ask before an irreversible action.
document.addEventListener("submit", function (event) {
  var form = event.target;
  var button = event.submitter;
  var ask = (button && button.dataset && button.dataset.confirm) ||
    (form instanceof HTMLFormElement && form.dataset.confirm);
  if (ask) {
    if (!window.confirm(ask)) {
      event.preventDefault();
    }
  }
});

// After a refused form or an AI refusal the page opens on the message:
// scroll it into view and put the keyboard focus on it.
document.addEventListener("DOMContentLoaded", function () {
  var problem = document.querySelector("[data-focus]");
  if (problem) {
    problem.scrollIntoView({ block: "center" });
    problem.focus({ preventScroll: true });
  }
});

// "/" focuses the patient search (unless typing in a field already).
document.addEventListener("keydown", function (event) {
  if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) {
    return;
  }
  var t = event.target;
  if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) {
    return;
  }
  var search = document.querySelector("input[type=search]");
  if (search) {
    event.preventDefault();
    search.focus();
    search.select();
  }
});

// Inactivity: the server ends a session after AMAL_IDLE_TIMEOUT without a
// request (data-idle, seconds). A minute before (half the limit when it is
// shorter) a warning counts down with "Stay signed in"; at zero the screen is
// cleared of patient data and the browser goes to the sign-in page.
(function () {
  var idle = Number(document.body && document.body.dataset.idle);
  var box = document.getElementById("idle-warning");
  if (!idle || !box) {
    return;
  }
  var lead = Math.min(60, Math.floor(idle / 2));
  var count = document.getElementById("idle-count");
  var deadline = 0;
  var timer = 0;

  function signOut() {
    window.clearInterval(timer);
    var main = document.getElementById("main");
    if (main) {
      main.replaceChildren();
    }
    box.hidden = true;
    document.title = "Signed out · Dr Amal Clinical OS";
    window.location.replace("/login?done=idle");
  }

  function tick() {
    var left = Math.ceil((deadline - Date.now()) / 1000);
    if (left <= 0) {
      signOut();
    } else if (left <= lead) {
      count.textContent = String(left);
      if (box.hidden) {
        box.hidden = false;
        document.getElementById("idle-stay").focus();
      }
    }
  }

  function arm() {
    deadline = Date.now() + idle * 1000;
    box.hidden = true;
    window.clearInterval(timer);
    timer = window.setInterval(tick, 1000);
  }

  document.getElementById("idle-stay").addEventListener("click", function () {
    var token = document.querySelector("#logout input[name=_csrf]");
    var body = new URLSearchParams();
    body.set("_csrf", token ? token.value : "");
    fetch("/session/alive", {
      method: "POST",
      body: body,
      credentials: "same-origin",
      redirect: "manual"
    }).then(function (r) {
      if (r.status === 204) {
        arm();
      } else {
        signOut();
      }
    }, signOut);
  });
  arm();
})();

// Search as you type: the search box with data-suggest="ID" asks the same
// page (/patients?q=…) 250 ms after the last key and swaps in its #ID part,
// parsed as a document (no HTML strings are inserted). Enter still submits
// the form; without this file the form works as before. Arrow keys move
// between the box and the result links.
(function () {
  var box = document.querySelector("input[data-suggest]");
  if (!box || !window.fetch || !window.DOMParser) {
    return;
  }
  var target = document.getElementById(box.dataset.suggest);
  var form = box.form;
  var timer = 0;
  var asked = 0;
  box.addEventListener("input", function () {
    window.clearTimeout(timer);
    timer = window.setTimeout(function () {
      var q = box.value.trim();
      if (q.length < 2) {
        return;
      }
      var ticket = ++asked;
      var url = form.action + "?" + new URLSearchParams({ q: q }).toString();
      fetch(url, { credentials: "same-origin", redirect: "manual" })
        .then(function (r) { return r.ok ? r.text() : ""; })
        .then(function (html) {
          if (!html || ticket !== asked) {
            return;
          }
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById(target.id);
          if (fresh) {
            target.replaceChildren.apply(target, Array.from(fresh.childNodes));
            var hint = document.getElementById("date-hint");
            var freshHint = doc.getElementById("date-hint");
            if (hint && !freshHint) { hint.remove(); }
            if (freshHint && !hint) { form.after(freshHint); }
            history.replaceState(null, "", url);
          }
        }, function () {});
    }, 250);
  });
  function links() {
    return Array.from(target.querySelectorAll("tbody a"));
  }
  box.addEventListener("keydown", function (event) {
    if (event.key === "ArrowDown" && links().length) {
      event.preventDefault();
      links()[0].focus();
    }
  });
  target.addEventListener("keydown", function (event) {
    var all = links();
    var i = all.indexOf(document.activeElement);
    if (i < 0) {
      return;
    }
    if (event.key === "ArrowDown" && i + 1 < all.length) {
      event.preventDefault();
      all[i + 1].focus();
    } else if (event.key === "ArrowUp") {
      event.preventDefault();
      (i === 0 ? box : all[i - 1]).focus();
    } else if (event.key === "Escape") {
      box.focus();
    }
  });
})();

// Buttons with data-print open the browser's print dialog (print styles
// hide the forms and navigation).
document.addEventListener("click", function (event) {
  var t = event.target;
  if (t instanceof Element && t.closest("[data-print]")) {
    window.print();
  }
});

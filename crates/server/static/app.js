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

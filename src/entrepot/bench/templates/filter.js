// Filters the rows marked data-row of the element a form names in data-target: a row stays when
// it contains the typed text and, for each select or ticked box, its data attribute of the same
// name lists the chosen value (space-separated). Runs offline; loads nothing.
document.querySelectorAll("form.filter").forEach(function (form) {
  var target = document.getElementById(form.dataset.target);
  var rows = Array.prototype.slice.call(target.querySelectorAll("[data-row]"));
  var count = form.querySelector(".count");
  var haystack = rows.map(function (row) { return row.textContent.toLowerCase(); });
  function chosen() {
    var wanted = [];
    form.querySelectorAll("select, input[type=checkbox]").forEach(function (field) {
      if (field.type === "checkbox" ? field.checked : field.value) {
        wanted.push([field.name, field.value]);
      }
    });
    return wanted;
  }
  function apply() {
    var text = form.elements.q ? form.elements.q.value.toLowerCase() : "";
    var wanted = chosen();
    var shown = 0;
    rows.forEach(function (row, i) {
      var keep = haystack[i].indexOf(text) >= 0 && wanted.every(function (pair) {
        return (" " + (row.dataset[pair[0]] || "") + " ").indexOf(" " + pair[1] + " ") >= 0;
      });
      row.hidden = !keep;
      shown += keep ? 1 : 0;
    });
    if (count) { count.textContent = shown + " of " + rows.length + " shown"; }
  }
  form.addEventListener("input", apply);
  form.addEventListener("change", apply);
  form.addEventListener("submit", function (event) { event.preventDefault(); });
  apply();
});

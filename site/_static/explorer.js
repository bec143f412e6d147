// The static guidance explorer: plain controls over the grids the site's builder computed ahead
// (window.COURSE_EXPLORER, written by python -m course_utils site into _static/explorer/data.js).
(function () {
  "use strict";
  const data = window.COURSE_EXPLORER;
  const $ = (id) => document.getElementById(id);
  const method = $("explorer-method"), digit = $("explorer-digit"), scale = $("explorer-scale");
  const pct = (v) => Math.round(100 * v) + "%";
  const fmt = (s) => String(Math.round(1000 * s) / 1000);

  function option(select, value, text) {
    const o = document.createElement("option");
    o.value = value;
    o.textContent = text;
    select.appendChild(o);
  }

  function scales() { return data.methods[method.value].scales; }

  function show() {
    const m = data.methods[method.value];
    const s = scales()[Number(scale.value)];
    const g = m.grids[digit.value + "_" + fmt(s)];
    $("explorer-scale-value").textContent = "s = " + fmt(s) + (s === 1 ? " (the unguided conditional)" : "");
    const grid = $("explorer-grid");
    grid.src = "_static/explorer/" + g.png;
    grid.alt = data.n + " samples asked to be the digit " + digit.value + ", " + m.label + " at scale " + fmt(s) +
      ": the evaluator reads " + pct(g.accuracy) + " of them as " + digit.value;
    $("explorer-stats").textContent = m.label + ", digit " + digit.value + ", s = " + fmt(s) + ": accuracy " +
      pct(g.accuracy) + ", diversity " + g.diversity.toFixed(1) + " (" + data.n + " samples, seed " + data.seed +
      ", " + data.steps + " steps)";
    const curve = $("explorer-curve");
    curve.src = "_static/explorer/" + m.curve;
    const row = m.curve_rows.find((r) => r.scale === s);
    curve.alt = "Accuracy, Frechet distance, recall and diversity of " + m.label + " against the guidance scale, " +
      data.curve_n + " samples a point over all digits, s = 1 dotted and real digits dashed";
    $("explorer-curve-caption").textContent = row
      ? "At s = " + fmt(s) + " over " + data.curve_n + " samples of all digits: accuracy " + pct(row.accuracy) +
        ", Frechet distance " + row.frechet.toFixed(1) + ", recall " + pct(row.recall) + "."
      : "The quality report did not measure s = " + fmt(s) + ".";
  }

  function chooseMethod() {
    const list = scales();
    scale.max = String(list.length - 1);
    const one = list.indexOf(1);
    scale.value = String(one >= 0 ? one : 0);
    show();
  }

  if (!data) { $("explorer-facts").textContent = "The explorer's data (data.js) is missing."; return; }
  Object.keys(data.methods).forEach((k) => option(method, k, data.methods[k].label));
  data.digits.forEach((d) => option(digit, String(d), String(d)));
  method.addEventListener("change", chooseMethod);
  digit.addEventListener("change", show);
  scale.addEventListener("input", show);
  const made = data.made;
  $("explorer-facts").textContent = "Grids computed when the site was built, for the digits " + data.digits.join(", ") +
    (made.fast ? " (the tests' fast build: one digit, " + data.steps + " steps)" : "") +
    "; the curves are the quality report's (seeds " + data.curve_seeds.join(", ") + "). The notebooks beside them ran " +
    made.finished + ".";
  chooseMethod();
})();

"""The page at ``/``: draw on a canvas (mouse, finger or pen), upload a picture or take a photo; it
shows the model's top classes as bars and the exact input the model saw.

Self-contained (no fonts, scripts or styles from elsewhere), so it works on a box with no
internet. It asks the server for the models (/v2/repository/index) and each model's class
names (/v2/models/NAME), so it serves any cnnx model, not only digits. Its icon is empty and inline,
so a browser does not ask for /favicon.ico (a 404 in the metrics for every visit).
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cnnx serve</title>
<link rel="icon" href="data:,">
<style>
  body { font: 16px system-ui, sans-serif; margin: 0 auto; max-width: 760px; padding: 12px; color: #222; }
  h1 { font-size: 20px; margin: 4px 0 12px; }
  .row { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
  canvas { border: 1px solid #888; border-radius: 6px; touch-action: none; background: #fff; cursor: crosshair;
           width: 280px; height: 280px; }
  button, label.button, select { font: inherit; padding: 6px 12px; margin: 4px 4px 0 0; border-radius: 6px;
           border: 1px solid #888; background: #f4f4f4; cursor: pointer; }
  input[type=file] { display: none; }
  #answer { min-width: 260px; flex: 1; }
  #label { font-size: 56px; font-weight: bold; line-height: 1.1; min-height: 62px; }
  #error { color: #b00020; min-height: 20px; }
  .bar { display: flex; align-items: center; gap: 8px; margin: 3px 0; }
  .bar .name { width: 90px; text-align: right; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  .bar .track { flex: 1; background: #eee; border-radius: 3px; height: 16px; }
  .bar .fill { background: #3b6fd8; height: 16px; border-radius: 3px; }
  .bar .p { width: 56px; font-variant-numeric: tabular-nums; }
  #seen { width: 112px; height: 112px; image-rendering: pixelated; border: 1px solid #888; background: #000; }
  #picture { max-width: 280px; max-height: 280px; display: none; border-radius: 6px; }
  small { color: #666; }
</style>
</head>
<body>
<h1>cnnx serve <small id="about"></small></h1>
<div class="row">
  <div>
    <canvas id="pad" width="280" height="280" aria-label="drawing pad"></canvas>
    <img id="picture" alt="the picture sent">
    <div>
      <button id="clear" type="button">Clear</button>
      <label class="button">Upload a picture<input id="file" type="file" accept="image/*"></label>
      <label class="button">Take a photo<input id="camera" type="file" accept="image/*" capture="environment"></label>
      <select id="model" aria-label="model"></select>
    </div>
  </div>
  <div id="answer">
    <div id="label" aria-live="polite"></div>
    <div id="error"></div>
    <div id="bars"></div>
    <p><small>what the model saw</small><br><img id="seen" alt="the model's input"></p>
  </div>
</div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const pad = $("pad"), ctx = pad.getContext("2d");
let classes = [], drawing = false, timer = null, busy = 0;

function blank() {
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, pad.width, pad.height);
  ctx.strokeStyle = "#000"; ctx.lineWidth = 20; ctx.lineCap = "round"; ctx.lineJoin = "round";
}
function point(e) {
  const r = pad.getBoundingClientRect();
  return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
}
pad.addEventListener("pointerdown", (e) => {
  e.preventDefault(); pad.setPointerCapture(e.pointerId); drawing = true; clearTimeout(timer);
  $("picture").style.display = "none"; pad.style.display = "";
  const [x, y] = point(e); ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(x, y); ctx.stroke();
});
pad.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  const [x, y] = point(e); ctx.lineTo(x, y); ctx.stroke();
});
function lift() {
  if (!drawing) return;
  drawing = false; clearTimeout(timer); timer = setTimeout(() => pad.toBlob((b) => classify(b), "image/png"), 250);
}
pad.addEventListener("pointerup", lift);
pad.addEventListener("pointercancel", lift);
$("clear").addEventListener("click", () => { blank(); show(null); });
for (const id of ["file", "camera"]) {
  $(id).addEventListener("change", (e) => {
    const f = e.target.files[0]; if (!f) return;
    const pic = $("picture"); pic.src = URL.createObjectURL(f); pic.style.display = "block"; pad.style.display = "none";
    classify(f); e.target.value = "";
  });
}
$("model").addEventListener("change", () => loadModel($("model").value));

async function classify(blob) {
  const k = Math.max(1, Math.min(classes.length || 10, 10));
  const url = "predict?preprocessed=1&top_k=" + k + "&model=" + encodeURIComponent($("model").value);
  busy += 1; document.body.dataset.busy = busy;
  try {
    const headers = {"Content-Type": blob.type || "application/octet-stream"};
    const r = await fetch(url, {method: "POST", headers: headers, body: blob});
    const answer = await r.json();
    const p = (answer.predictions || [])[0] || {error: answer.error || ("HTTP " + r.status)};
    show(p);
  } catch (err) {
    show({error: String(err)});
  } finally {
    busy -= 1; document.body.dataset.busy = busy;
  }
}
function show(p) {
  // a refusal ("not a digit: score ...") shows its first words where the label would be
  $("label").textContent = p && p.refused ? p.refused.split(":")[0] : (p && p.label !== undefined ? p.label : "");
  $("error").textContent = p && p.error ? p.error : "";
  const bars = $("bars"); bars.textContent = "";
  for (const t of (p && p.top_k) || []) {
    const row = document.createElement("div"); row.className = "bar";
    const name = document.createElement("span"); name.className = "name"; name.textContent = t.label;
    const track = document.createElement("span"); track.className = "track";
    const fill = document.createElement("span"); fill.className = "fill"; fill.style.display = "block";
    fill.style.width = (100 * t.probability).toFixed(1) + "%"; track.appendChild(fill);
    const pct = document.createElement("span"); pct.className = "p";
    pct.textContent = (100 * t.probability).toFixed(1) + "%";
    row.append(name, track, pct); bars.appendChild(row);
  }
  const seen = $("seen");
  if (p && p.preprocessed) seen.src = p.preprocessed; else seen.removeAttribute("src");
  document.body.dataset.answered = p ? "yes" : "";
}
async function loadModel(name) {
  const meta = await (await fetch("v2/models/" + encodeURIComponent(name))).json();
  classes = meta.parameters.classes;
  const shape = meta.inputs[0].shape.slice(1).join("x");
  $("about").textContent = name + " v" + meta.versions[0] + ": " + classes.length + " classes, input " + shape;
}
async function start() {
  blank();
  const models = await (await fetch("v2/repository/index", {method: "POST"})).json();
  for (const m of models) {
    const o = document.createElement("option"); o.value = o.textContent = m.name; $("model").appendChild(o);
  }
  $("model").style.display = models.length > 1 ? "" : "none";
  await loadModel(models[0].name);
  document.body.dataset.ready = "yes";
}
start();
</script>
</body>
</html>
"""

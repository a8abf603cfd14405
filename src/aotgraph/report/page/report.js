// aotgraph report page: the joint graph on a canvas (overview by group, expand on click, zoom,
// pan, search), sortable tables, and hover on the memory plot. Reads the report from the JSON in
// <script id="report-data">. When it has run, <body data-rendered="ok">; an error sets data-error;
// data-paint-ms is the last drawing of the graph. report.html#search=TEXT opens on that search.
"use strict";
window.onerror = function (message, source, line) {
  document.body.setAttribute("data-error", String(message));
  var pre = document.createElement("pre");
  pre.id = "script-error";
  pre.textContent = "script error: " + message + " (line " + line + ")";
  document.body.insertBefore(pre, document.body.firstChild);
};

var REPORT = JSON.parse(document.getElementById("report-data").textContent);

function humanBytes(n) {
  var units = ["B", "KiB", "MiB", "GiB"], i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i === 0 ? n.toFixed(0) + " B" : n.toFixed(1) + " " + units[i];
}

// ---- sortable tables: <th class="sortable" data-type="num|text">, cells with data-sort
function makeSortable(table) {
  var heads = table.querySelectorAll("thead th");
  heads.forEach(function (th, column) {
    if (!th.classList.contains("sortable")) return;
    th.addEventListener("click", function () {
      var order = th.getAttribute("data-order") === "asc" ? "desc" : "asc";
      heads.forEach(function (h) { h.removeAttribute("data-order"); });
      th.setAttribute("data-order", order);
      var numeric = th.getAttribute("data-type") === "num", body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[column].getAttribute("data-sort"), y = b.cells[column].getAttribute("data-sort");
        var c = numeric ? Number(x) - Number(y) : x.localeCompare(y);
        return order === "asc" ? c : -c;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
}
document.querySelectorAll("table.sortable-table").forEach(makeSortable);

// ---- memory plot hover: the value of each curve at the pointer's step
(function memoryHover() {
  var svg = document.querySelector(".memory-plot svg"), out = document.getElementById("memory-hover");
  if (!svg || !out) return;
  var box = JSON.parse(svg.getAttribute("data-box")), cursor = svg.querySelector(".cursor");
  svg.addEventListener("mousemove", function (event) {
    var rect = svg.getBoundingClientRect();
    var x = (event.clientX - rect.left) * (svg.viewBox.baseVal.width / rect.width);
    if (x < box.left || x > box.right) { out.textContent = ""; return; }
    var half = (box.right - box.left) / 2, inBackward = x >= box.left + half;
    var fraction = (x - box.left - (inBackward ? half : 0)) / half;
    cursor.setAttribute("x1", x); cursor.setAttribute("x2", x);
    out.textContent = (inBackward ? "backward: " : "forward: ") + REPORT.memory.map(function (curve) {
      var values = inBackward ? curve.backward : curve.forward, names = inBackward ? curve.backward_steps : curve.forward_steps;
      if (!values.length) return curve.label + " -";
      var i = Math.min(values.length - 1, Math.floor(fraction * values.length));
      return curve.label + " " + humanBytes(values[i]) + " at " + names[i];
    }).join("  |  ");
  });
})();

// ---- the joint graph
var COLORS = {};
["input", "forward", "offloaded", "recomputed", "backward", "tangent", "unused", "cut"].forEach(function (k) {
  COLORS[k] = getComputedStyle(document.documentElement).getPropertyValue("--" + k).trim() || "#888";
});
var COL = 26, ROW = 16, NODE_W = 18, NODE_H = 11, BOX_W = 90, SEGMENT_GAP = 28, FULL_HEIGHT = 560;

function GraphView(canvas, joint) {
  var self = this, nodes = joint.nodes, groups = joint.groups.map(function (g, i) {
    return { index: i, name: g.name, side: g.side, members: [], minRank: Infinity, maxRank: -Infinity, rows: 1, counts: {} };
  });
  nodes.forEach(function (n, i) {
    var g = groups[n.group];
    g.members.push(i);
    g.minRank = Math.min(g.minRank, n.rank); g.maxRank = Math.max(g.maxRank, n.rank);
    g.counts[n.placement] = (g.counts[n.placement] || 0) + 1;
  });
  var rowOf = new Int32Array(nodes.length);
  groups.forEach(function (g) {  // a node's row inside its group: its order among members of its column
    var used = {};
    g.members.forEach(function (i) { var r = nodes[i].rank; rowOf[i] = used[r] || 0; used[r] = rowOf[i] + 1; });
    g.rows = Math.max.apply(null, Object.keys(used).map(function (k) { return used[k]; }).concat([1]));
  });
  // lanes: interval packing of the groups' column ranges, fixed once; heights follow expansion
  var lanes = [];
  groups.slice().sort(function (a, b) { return a.minRank - b.minRank || a.index - b.index; }).forEach(function (g) {
    for (var l = 0; l < lanes.length; l++) if (lanes[l].end < g.minRank) break;
    if (l === lanes.length) lanes.push({ end: -1, groups: [] });
    lanes[l].end = g.maxRank; lanes[l].groups.push(g); g.lane = l;
  });
  this.expanded = new Set();
  if (nodes.length <= 800) groups.forEach(function (g) { self.expanded.add(g.index); });
  this.canvas = canvas; this.nodes = nodes; this.groups = groups; this.lanes = lanes; this.rowOf = rowOf;
  this.edges = joint.edges; this.cutRank = joint.cut_rank;
  this.scale = 1; this.tx = 10; this.ty = 10; this.highlight = new Set(); this.selected = -1;
  this.layout();
}

// Layout: columns are as wide as a node where a group is expanded, and share BOX_W among the
// columns of a collapsed group elsewhere; lanes stack groups whose columns overlap; a picture much
// wider than high is wrapped into segments, one under the other, like lines of text.
GraphView.prototype.layout = function () {
  var self = this, y = 0, columns = 1 + Math.max.apply(null, this.groups.map(function (g) { return g.maxRank; }).concat([0]));
  this.lanes.forEach(function (lane) {
    lane.y = y;
    var rows = 1;
    lane.groups.forEach(function (g) { if (self.expanded.has(g.index)) rows = Math.max(rows, g.rows); });
    lane.height = rows * ROW + 10;
    y += lane.height;
  });
  var band = y + SEGMENT_GAP, width = new Float64Array(columns), X = new Float64Array(columns + 1);
  this.groups.forEach(function (g) {
    var open = self.expanded.has(g.index), share = BOX_W / (g.maxRank - g.minRank + 1);
    for (var c = g.minRank; c <= g.maxRank; c++) width[c] = open ? COL : Math.max(width[c], share);
  });
  for (var c = 0; c < columns; c++) X[c + 1] = X[c] + (width[c] === COL ? COL : Math.min(COL, width[c]));
  var length = X[columns], segments = Math.max(1, Math.round(Math.sqrt(length / (2.2 * band))));
  var segment = Math.max(COL * 4, Math.ceil(length / segments));
  segments = Math.max(1, Math.ceil(length / segment));
  function place(item, x) {  // into its segment
    var k = Math.min(segments - 1, Math.floor(x / segment));
    item.x = x - k * segment; item.y += k * band;
    return item;
  }
  var itemOf = new Int32Array(this.nodes.length), items = [];
  this.groups.forEach(function (g) {
    var laneY = self.lanes[g.lane].y;
    if (self.expanded.has(g.index)) {
      g.item = -1;
      g.members.forEach(function (i) {
        itemOf[i] = items.length;
        items.push(place({ node: i, group: g.index, y: laneY + self.rowOf[i] * ROW, w: NODE_W, h: NODE_H }, X[self.nodes[i].rank]));
      });
    } else {
      g.item = items.length;
      g.members.forEach(function (i) { itemOf[i] = items.length; });
      items.push(place({ node: -1, group: g.index, y: laneY, w: Math.max(4, X[g.maxRank + 1] - X[g.minRank] - 3), h: ROW }, X[g.minRank]));
    }
  });
  var seen = new Map(), links = [];
  this.edges.forEach(function (e) {
    var a = itemOf[e[0]], b = itemOf[e[1]];
    if (a === b) return;
    var key = a * 1048576 + b;
    if (seen.has(key)) { links[seen.get(key)].count++; return; }
    seen.set(key, links.length);
    links.push({ a: a, b: b, count: 1, cut: self.nodes[e[0]].side !== self.nodes[e[1]].side });
  });
  var cutX = X[Math.min(this.cutRank, columns)], cutSegment = Math.min(segments - 1, Math.floor(cutX / segment));
  this.cut = { x: cutX - cutSegment * segment - (COL - NODE_W) / 2, y: cutSegment * band, h: y };
  this.width = segments > 1 ? segment + COL : length;
  this.height = segments * band;
  this.band = band; this.segments = segments;
  this.items = items; this.links = links; this.itemOf = itemOf;
};

GraphView.prototype.fit = function () {
  var w = this.canvas.clientWidth, h = FULL_HEIGHT;
  this.scale = Math.max(0.02, Math.min(w / (this.width + 20), h / (this.height + 20), 2));
  this.canvas.style.height = Math.max(240, Math.min(FULL_HEIGHT, this.height * this.scale + 30)) + "px";
  this.tx = 10; this.ty = 16; this.draw();
};

GraphView.prototype.draw = function () {
  var self = this;
  if (this.pending) return;
  this.pending = true;
  requestAnimationFrame(function () { self.pending = false; self.paint(); });
};

GraphView.prototype.paint = function () {
  var started = performance.now();
  this.paintOnce();
  document.body.setAttribute("data-paint-ms", (performance.now() - started).toFixed(1));
};

GraphView.prototype.paintOnce = function () {
  var canvas = this.canvas, ratio = window.devicePixelRatio || 1;
  var w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * ratio)) { canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio); }
  var ctx = canvas.getContext("2d"), s = this.scale, tx = this.tx, ty = this.ty, self = this;
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  var x0 = -tx / s, y0 = -ty / s, x1 = (w - tx) / s, y1 = (h - ty) / s;
  function visible(it) { return it.x + it.w >= x0 && it.x <= x1 && it.y + it.h >= y0 && it.y <= y1; }
  // edges, cheapest first: ordinary ones faint, those across the cut (saved values) red
  ctx.lineWidth = 1;
  [false, true].forEach(function (cutPass) {
    ctx.strokeStyle = cutPass ? "rgba(217,45,32,0.45)" : "rgba(60,70,90,0.18)";
    ctx.beginPath();
    self.links.forEach(function (l) {
      if (l.cut !== cutPass) return;
      var a = self.items[l.a], b = self.items[l.b];
      var ax = a.x + a.w, ay = a.y + a.h / 2, bx = b.x, by = b.y + b.h / 2;
      if (Math.max(ax, bx) < x0 || Math.min(ax, bx) > x1 || Math.max(ay, by) < y0 || Math.min(ay, by) > y1) return;
      ctx.moveTo(ax * s + tx, ay * s + ty); ctx.lineTo(bx * s + tx, by * s + ty);
    });
    ctx.stroke();
  });
  // segments of a wrapped picture, then the cut
  ctx.strokeStyle = "rgba(60,70,90,0.25)"; ctx.lineWidth = 1;
  for (var k = 1; k < this.segments; k++) {
    var sy = (k * this.band - SEGMENT_GAP / 2) * s + ty;
    ctx.beginPath(); ctx.moveTo(tx, sy); ctx.lineTo(this.width * s + tx, sy); ctx.stroke();
  }
  var cx = this.cut.x * s + tx, cy0 = (this.cut.y - 6) * s + ty, cy1 = (this.cut.y + this.cut.h) * s + ty;
  ctx.strokeStyle = COLORS.cut; ctx.setLineDash([6, 4]); ctx.lineWidth = 2;
  ctx.beginPath(); ctx.moveTo(cx, cy0); ctx.lineTo(cx, cy1); ctx.stroke(); ctx.setLineDash([]);
  ctx.font = "12px system-ui, sans-serif";
  var cutLabel = "cut: forward | backward", labelY = Math.max(12, cy0 + 12);
  ctx.fillStyle = "rgba(255,255,255,0.85)"; ctx.fillRect(cx + 4, labelY - 11, ctx.measureText(cutLabel).width + 4, 14);
  ctx.fillStyle = COLORS.cut; ctx.fillText(cutLabel, cx + 6, labelY);
  // items
  var labels = s * ROW >= 13;
  ctx.font = Math.max(9, Math.min(12, 9 * s)) + "px system-ui, sans-serif";
  this.items.forEach(function (it, k) {
    if (!visible(it)) return;
    var X = it.x * s + tx, Y = it.y * s + ty, W = Math.max(1, it.w * s), H = Math.max(1, it.h * s);
    if (it.node >= 0) {
      var n = self.nodes[it.node];
      ctx.fillStyle = COLORS[n.placement] || "#888";
      ctx.fillRect(X, Y, W, H);
      if (n.saved) { ctx.strokeStyle = COLORS.cut; ctx.lineWidth = 1.5; ctx.strokeRect(X, Y, W, H); }
      if (self.highlight.has(it.node) || self.selected === it.node) {
        ctx.strokeStyle = "#111"; ctx.lineWidth = 2; ctx.strokeRect(X - 2, Y - 2, W + 4, H + 4);
      }
    } else {
      var g = self.groups[it.group], total = g.members.length, offset = 0;
      ["input", "forward", "offloaded", "recomputed", "backward", "tangent", "unused"].forEach(function (p) {
        var c = g.counts[p] || 0;
        if (!c) return;
        ctx.fillStyle = COLORS[p];
        ctx.fillRect(X + offset, Y, W * c / total, H * 0.75);
        offset += W * c / total;
      });
      ctx.strokeStyle = "rgba(0,0,0,0.25)"; ctx.lineWidth = 1; ctx.strokeRect(X, Y, W, H * 0.75);
      if (labels && W > 30) {
        ctx.fillStyle = "#1d2330";
        ctx.fillText(g.name + " (" + total + ")", X + 3, Y + H * 0.75 - 3, W - 6);
      }
    }
  });
  if (labels) {
    ctx.fillStyle = "#1d2330";
    this.items.forEach(function (it) {
      if (it.node < 0 || !visible(it) || s * COL < 60) return;
      var n = self.nodes[it.node];
      ctx.fillText(n.label || n.op, it.x * s + tx + NODE_W * s + 2, it.y * s + ty + NODE_H * s - 1, (COL - NODE_W) * s + 60);
    });
  }
};

GraphView.prototype.itemAt = function (px, py) {
  var x = (px - this.tx) / this.scale, y = (py - this.ty) / this.scale;
  for (var k = 0; k < this.items.length; k++) {
    var it = this.items[k];
    if (x >= it.x - 2 && x <= it.x + it.w + 2 && y >= it.y - 2 && y <= it.y + it.h + 2) return it;
  }
  return null;
};

GraphView.prototype.describe = function (it) {
  if (!it) return "";
  var g = this.groups[it.group];
  if (it.node < 0) {
    return g.name + (g.side ? " (backward side)" : " (forward side)") + ": " + g.members.length + " nodes\n" +
      Object.keys(g.counts).map(function (k) { return k + " " + g.counts[k]; }).join(", ") + "\nclick to expand";
  }
  var n = this.nodes[it.node];
  return n.name + (n.label ? " = " + n.label : "") + "\nop: " + n.op + "\nruns: " + n.placement +
    (n.saved ? " (saved for backward)" : "") + "\nvalue: " + (n.shape || "-") + ", " + humanBytes(n.nbytes) +
    "\ngroup: " + g.name + "\nshift-click: collapse the group";
};

GraphView.prototype.centerOn = function (nodeIndex) {
  var it = this.items[this.itemOf[nodeIndex]];
  this.scale = Math.max(this.scale, 1.2);
  this.tx = this.canvas.clientWidth / 2 - (it.x + it.w / 2) * this.scale;
  this.ty = this.canvas.clientHeight / 2 - (it.y + it.h / 2) * this.scale;
  this.draw();
};

GraphView.prototype.search = function (text) {
  var query = text.trim().toLowerCase(), self = this, matches = [];
  this.highlight = new Set();
  if (query) {
    this.nodes.forEach(function (n, i) {
      if (n.name.toLowerCase().indexOf(query) >= 0 || n.op.toLowerCase().indexOf(query) >= 0 ||
          n.label.toLowerCase().indexOf(query) >= 0) matches.push(i);
    });
    matches.forEach(function (i) { self.highlight.add(i); self.expanded.add(self.nodes[i].group); });
    if (matches.length) this.layout();
  }
  this.draw();
  return matches;
};

function setUpGraph() {
  var canvas = document.getElementById("graph-canvas");
  if (!canvas) return null;
  var view = new GraphView(canvas, REPORT.joint), info = document.getElementById("graph-info");
  var dragging = null, moved = false;
  canvas.addEventListener("wheel", function (event) {
    event.preventDefault();
    var rect = canvas.getBoundingClientRect(), px = event.clientX - rect.left, py = event.clientY - rect.top;
    var factor = Math.exp(-event.deltaY * 0.0015), scale = Math.min(8, Math.max(0.005, view.scale * factor));
    view.tx = px - (px - view.tx) * scale / view.scale; view.ty = py - (py - view.ty) * scale / view.scale;
    view.scale = scale; view.draw();
  }, { passive: false });
  canvas.addEventListener("mousedown", function (event) { dragging = [event.clientX, event.clientY]; moved = false; });
  window.addEventListener("mouseup", function () { dragging = null; });
  canvas.addEventListener("mousemove", function (event) {
    var rect = canvas.getBoundingClientRect();
    if (dragging) {
      var dx = event.clientX - dragging[0], dy = event.clientY - dragging[1];
      if (Math.abs(dx) + Math.abs(dy) > 2) moved = true;
      view.tx += dx; view.ty += dy; dragging = [event.clientX, event.clientY]; view.draw();
    } else if (view.selected < 0) {
      info.textContent = view.describe(view.itemAt(event.clientX - rect.left, event.clientY - rect.top));
    }
  });
  canvas.addEventListener("click", function (event) {
    if (moved) return;
    var rect = canvas.getBoundingClientRect(), it = view.itemAt(event.clientX - rect.left, event.clientY - rect.top);
    if (!it) { view.selected = -1; info.textContent = ""; view.draw(); return; }
    if (it.node < 0) { view.expanded.add(it.group); view.layout(); view.draw(); return; }
    if (event.shiftKey) { view.expanded.delete(it.group); view.selected = -1; view.layout(); view.draw(); return; }
    view.selected = it.node; info.textContent = view.describe(it); view.draw();
  });
  var search = document.getElementById("graph-search"), status = document.getElementById("graph-search-status");
  var matches = [], current = 0;
  search.addEventListener("keydown", function (event) {
    if (event.key !== "Enter") return;
    if (!matches.length || search.getAttribute("data-query") !== search.value) {
      matches = view.search(search.value); current = 0; search.setAttribute("data-query", search.value);
    } else {
      current = (current + 1) % matches.length;
    }
    status.textContent = matches.length ? (current + 1) + " of " + matches.length + " matches" : "no match";
    if (matches.length) { view.selected = matches[current]; view.centerOn(matches[current]); info.textContent = view.describe(view.items[view.itemOf[matches[current]]]); }
  });
  document.getElementById("graph-expand").addEventListener("click", function () {
    view.groups.forEach(function (g) { view.expanded.add(g.index); }); view.layout(); view.fit();
  });
  document.getElementById("graph-collapse").addEventListener("click", function () {
    view.expanded.clear(); view.selected = -1; view.layout(); view.fit();
  });
  document.getElementById("graph-fit").addEventListener("click", function () { view.fit(); });
  window.addEventListener("resize", function () { view.draw(); });
  var wanted = /^#search=(.+)$/.exec(window.location.hash);  // report.html#search=addmm opens on a search
  if (wanted) { search.value = decodeURIComponent(wanted[1]); search.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" })); }
  view.fit();
  view.paint();
  return view;
}

window.aotgraphGraph = setUpGraph();
document.body.setAttribute("data-rendered", "ok");

// The simulator's heatmap (GET /v1/dashboard/heatmap): DSI's speedup over
// non-SI for every drafter latency c (x) and acceptance rate a (y), with
// this server's measured operating point marked.

import { api } from "./auth.js";

export async function drawHeatmap(canvas, caption, point) {
  const response = await api("/v1/dashboard/heatmap");
  if (!response.ok) {
    caption.textContent = `the simulator failed: ${response.status}`;
    return 0;
  }
  const { servers, cells } = await response.json();
  const cs = [...new Set(cells.map((c) => c.c))].sort((x, y) => x - y);
  const as = [...new Set(cells.map((c) => c.a))].sort((x, y) => x - y);
  const max = Math.max(...cells.map((c) => c.dsi_over_nonsi));
  const ctx = canvas.getContext("2d");
  const pad = 36;
  const w = (canvas.width - pad) / cs.length;
  const h = (canvas.height - pad) / as.length;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  for (const cell of cells) {
    const i = cs.indexOf(cell.c);
    const j = as.indexOf(cell.a);
    ctx.fillStyle = colour(Math.log(cell.dsi_over_nonsi) / Math.log(Math.max(max, 1.0001)));
    ctx.fillRect(pad + i * w, (as.length - 1 - j) * h, w + 0.5, h + 0.5);
  }
  ctx.fillStyle = "#333";
  ctx.font = "11px system-ui";
  ctx.fillText("drafter latency c →", pad, canvas.height - 6);
  ctx.save();
  ctx.translate(11, canvas.height - pad);
  ctx.rotate(-Math.PI / 2);
  ctx.fillText("acceptance a →", 0, 0);
  ctx.restore();
  let where = "operating point not measured yet: run a generation";
  if (point && point.a !== null && point.c !== null) {
    const px = pad + Math.min(point.c, 1) * (canvas.width - pad);
    const py = (1 - Math.min(point.a, 1)) * (canvas.height - pad);
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 2.5;
    ctx.beginPath();
    ctx.arc(px, py, 7, 0, 2 * Math.PI);
    ctx.stroke();
    where = `this server: a = ${point.a.toFixed(2)}, c = ${point.c.toFixed(3)} (circle)`;
  }
  caption.textContent = `DSI over non-SI, ${servers} target servers, up to ×${max.toFixed(1)} (bright). ${where}`;
  return cells.length;
}

// Dark blue (1x) to yellow (best).
function colour(t) {
  const x = Math.max(0, Math.min(1, t));
  const r = Math.round(30 + 225 * x);
  const g = Math.round(40 + 190 * x);
  const b = Math.round(110 - 80 * x);
  return `rgb(${r},${g},${b})`;
}

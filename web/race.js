// The race: POST /v1/dashboard/race runs the prompt in non-SI, SI, DSI and
// auto one after the other (each from empty caches, in an order that
// rotates from race to race) and returns when each token arrived; the page
// replays them on one clock, so the speedup is seen, not just read.

import { api } from "./auth.js";

export async function runRace(rows, prompt, lookahead) {
  rows.textContent = "running non-SI, SI, DSI and auto…";
  const response = await api("/v1/dashboard/race", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt, max_tokens: 32, lookahead }),
  });
  const body = await response.json();
  if (!response.ok) {
    rows.textContent = body.error ? body.error.message : `race failed: ${response.status}`;
    return null;
  }
  rows.replaceChildren();
  const longest = Math.max(...body.runs.map((r) => r.total_ms));
  const nonsi = body.runs.find((r) => r.mode === "nonsi");
  const views = body.runs.map((run) => {
    const row = document.createElement("div");
    row.className = "race-row";
    row.dataset.mode = run.mode;
    const name = document.createElement("strong");
    name.textContent = run.mode === "auto" ? `auto (${run.policy})` : run.mode;
    const bar = document.createElement("div");
    bar.className = "race-bar";
    const fill = document.createElement("div");
    fill.className = "race-fill";
    bar.append(fill);
    const label = document.createElement("span");
    const text = document.createElement("div");
    text.className = "race-text";
    row.append(name, bar, label, text);
    rows.append(row);
    return { run, fill, label, text };
  });
  const note = document.createElement("p");
  note.textContent =
    (body.identical ? "All runs produced identical tokens (lossless). " : "Outputs differ! ") +
    `Ran in the order ${body.order.join(", ")}; ${body.fairness}.`;
  rows.append(note);
  const began = performance.now();
  await new Promise((done) => {
    const frame = () => {
      const t = performance.now() - began;
      for (const v of views) {
        // One time axis for all runs: a bar grows until its run finished,
        // so the bars end where each mode ended.
        const n = v.run.times_ms.filter((x) => x <= t).length;
        v.fill.style.width = `${(100 * Math.min(t, v.run.total_ms)) / longest}%`;
        const finished = t >= v.run.total_ms;
        const speedup = nonsi ? nonsi.total_ms / v.run.total_ms : 1;
        v.label.textContent = finished
          ? `${v.run.total_ms.toFixed(0)} ms · ×${speedup.toFixed(2)} vs non-SI`
          : `${n} tokens`;
        if (finished) v.text.textContent = v.run.text;
      }
      if (t < longest + 50) requestAnimationFrame(frame);
      else done();
    };
    requestAnimationFrame(frame);
  });
  return body;
}

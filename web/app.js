// The dashboard: streams a completion from the OpenAI-compatible endpoint,
// draws the scheduler's job events live, keeps counters, runs the race and
// marks the operating point on the simulator's heatmap.
//
// When a generation has finished and its timeline is drawn, the page sets
// `window.__result` (what the browser test reads).

import { Timeline } from "./timeline.js";
import { drawHeatmap } from "./heatmap.js";
import { runRace } from "./race.js";
import { api, streamUrl } from "./auth.js";

const $ = (id) => document.getElementById(id);

async function main() {
  const info = await (await api("/v1/dashboard/info")).json();
  $("server-info").textContent =
    `${info.model} · ${info.targets.length} target servers (${info.targets.join(", ")})` +
    (info.drafter ? ` · drafter ${info.drafter}` : " · no drafter") +
    (info.emulated_target_ms ? ` · target emulated at ${info.emulated_target_ms[1]} ms/token` : "");
  $("mode").value = info.mode;
  $("lookahead").value = info.lookahead;
  const lanes = [];
  if (info.drafter) lanes.push({ name: info.drafter, role: "drafter" });
  for (const t of info.targets) lanes.push({ name: t, role: "target" });
  const timeline = new Timeline($("timeline"), lanes);

  const events = new EventSource(streamUrl("/v1/dashboard/timeline"));
  events.addEventListener("job", (e) => timeline.add(JSON.parse(e.data)));
  await new Promise((ready) => {
    events.addEventListener("open", ready, { once: true });
  });

  let started = null;
  let ended = null;
  let tokens = 0;
  setInterval(() => updateCounters(timeline, started, ended, tokens), 200);
  drawHeatmap($("heatmap"), $("heatmap-caption"), info.operating_point);

  $("prompt-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("run").disabled = true;
    window.__result = undefined;
    timeline.reset();
    $("output").textContent = "";
    $("status").textContent = "generating…";
    started = performance.now();
    ended = null;
    tokens = 0;
    const request = {
      prompt: $("prompt").value,
      max_tokens: Number($("max-tokens").value),
      temperature: Number($("temperature").value),
      mode: $("mode").value,
      lookahead: Number($("lookahead").value),
      stream: true,
      stream_options: { include_usage: true },
    };
    let chunks = 0;
    let usage = null;
    try {
      for await (const chunk of streamCompletion(request)) {
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.usage) usage = chunk.usage;
        for (const choice of chunk.choices) {
          if (choice.text) {
            $("output").textContent += choice.text;
            chunks += 1;
          }
        }
      }
      tokens = usage ? usage.completion_tokens : chunks;
      ended = performance.now();
      const seconds = (performance.now() - started) / 1000;
      $("status").textContent = usage
        ? `${usage.completion_tokens} tokens in ${seconds.toFixed(2)} s · ${describeAuto(usage)} · ` +
          `${usage.accepted_tokens}/${usage.draft_tokens} drafts accepted · ${usage.preempted_jobs} preempted`
        : "done";
    } catch (error) {
      $("status").textContent = `error: ${error.message}`;
    }
    $("run").disabled = false;
    // Let the last job events arrive and draw, then publish the result.
    await new Promise((r) => setTimeout(r, 400));
    timeline.draw();
    updateCounters(timeline, started, ended, tokens);
    const fresh = await (await api("/v1/dashboard/info")).json();
    drawHeatmap($("heatmap"), $("heatmap-caption"), fresh.operating_point);
    window.__result = {
      tokens,
      chunks,
      text: $("output").textContent,
      usage,
      lanes: [...document.querySelectorAll("#timeline .lane")].map((g) => g.dataset.role),
      jobs: Object.fromEntries(
        ["draft", "accepted", "rejected", "preempted", "stale", "queued"].map((k) => [
          k,
          document.querySelectorAll(`#timeline rect.job.${k}`).length,
        ]),
      ),
    };
  });

  $("race").addEventListener("click", async () => {
    $("race").disabled = true;
    timeline.reset();
    try {
      window.__race = await runRace($("race-rows"), $("prompt").value, Number($("lookahead").value));
    } finally {
      $("race").disabled = false;
    }
  });
  window.__ready = true;
}

/** POSTs a streaming completion and yields each parsed SSE chunk. */
async function* streamCompletion(request) {
  const response = await api("/v1/completions", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(request),
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const message = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of message.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  }
}

function updateCounters(timeline, started, ended, tokens) {
  const a = timeline.acceptance;
  $("c-tokens").textContent = tokens;
  $("c-acceptance").textContent = a.judged ? `${((100 * a.accepted) / a.judged).toFixed(0)}%` : "–";
  $("c-preempted").textContent = timeline.preempted;
  $("c-wasted").textContent = timeline.wasted;
  $("c-running").textContent = timeline.running;
  if (started !== null && tokens > 0) {
    const seconds = ((ended ?? performance.now()) - started) / 1000;
    $("c-rate").textContent = (tokens / seconds).toFixed(1);
  }
}

main().catch((error) => {
  document.body.dataset.error = error.message;
  $("status").textContent = `dashboard error: ${error.message}`;
});

// What ran; under auto, what it chose first, at which acceptance estimate
// and why (the predicted speedup over non-SI of the best policy of each
// mode), and how often it switched.
export function describeAuto(usage) {
  if (!usage.auto) return usage.policy || usage.mode;
  const first = usage.auto.decisions[0];
  const nonsi = first.alternatives.find((r) => r.policy.mode === "nonsi");
  const name = (p) => (p.mode === "nonsi" ? "nonsi" : p.mode === "si" ? `si k=${p.k}` : `dsi k=${p.k} N=${p.servers}`);
  const predicted = first.alternatives
    .map((r) => `${name(r.policy)} ×${(nonsi.ms_per_token / r.ms_per_token).toFixed(2)}`)
    .join(", ");
  const switches = usage.auto.decisions.length - 1;
  return (
    `auto: ${usage.policy} (chose ${name(first.policy)} at a = ${usage.auto.prior.toFixed(2)} ` +
    `from the ${usage.auto.prior_from.replace("_", " ")}; predicted ${predicted}; ${switches} switches)`
  );
}

// DSI computed in the browser: the bundled pair (or dropped checkpoint
// folders) loads into WebGPU through the wasm engine (crates/dsi-web), and
// non-SI, SI and DSI run on this page with dsi-core's state machine. The
// timeline and the counters are the dashboard's, fed by the page's own
// workers instead of a server.
//
// `?autorun=1` races the three modes on the default prompt once loaded
// (`prompt`, `max_tokens`, `lookahead`, `targets` override the defaults;
// `rounds=N` races N times) and publishes `window.__result` for tests and
// benchmarks.

import { Timeline } from "./timeline.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const BUNDLED = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json"];
const MODES = ["nonsi", "si", "dsi"];

let Engine = null;
let engine = null;
let timeline = null;
const live = { started: null, ended: null, tokens: 0 };

/** The bundled pair's files of `role`, as the page's server hosts them. */
async function fetchBundled(role) {
  const files = {};
  for (const name of BUNDLED) {
    const response = await fetch(`./models/${role}/${name}`);
    if (!response.ok) {
      if (name === "generation_config.json") continue;
      throw new Error(`models/${role}/${name}: HTTP ${response.status}`);
    }
    files[name] = new Uint8Array(await response.arrayBuffer());
  }
  return files;
}

/** A checkpoint's files from a picked folder or dropped files. */
async function readFiles(list) {
  const files = {};
  for (const file of list) {
    if (file.name.endsWith(".json") || file.name.endsWith(".safetensors")) {
      files[file.name] = new Uint8Array(await file.arrayBuffer());
    }
  }
  return files;
}

/** Files of a dropped folder (one level) or of dropped files. */
async function droppedFiles(transfer) {
  const files = [];
  const entries = [...transfer.items].map((item) => item.webkitGetAsEntry()).filter(Boolean);
  const fileOf = (entry) => new Promise((ok, fail) => entry.file(ok, fail));
  for (const entry of entries) {
    if (entry.isFile) files.push(await fileOf(entry));
    if (entry.isDirectory) {
      const children = await new Promise((ok, fail) => entry.createReader().readEntries(ok, fail));
      for (const child of children) if (child.isFile) files.push(await fileOf(child));
    }
  }
  return files;
}

const picked = { target: null, drafter: null };

function setUpPickers() {
  for (const role of ["target", "drafter"]) {
    $(`${role}-files`).addEventListener("change", async (e) => {
      picked[role] = await readFiles(e.target.files);
      $("load-status").textContent = `${role}: ${Object.keys(picked[role]).join(", ")}`;
    });
  }
  for (const zone of document.querySelectorAll(".drop")) {
    zone.addEventListener("dragover", (e) => {
      e.preventDefault();
      zone.classList.add("over");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", async (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      const role = zone.dataset.role;
      picked[role] = await readFiles(await droppedFiles(e.dataTransfer));
      $("load-status").textContent = `${role}: ${Object.keys(picked[role]).join(", ")}`;
    });
  }
  $("load").addEventListener("click", () => load(picked.target, picked.drafter).catch(showError));
}

/** Loads a pair (the bundled one for what is not given); returns ms taken. */
async function load(target, drafter) {
  setBusy(true);
  $("load-status").textContent = "loading…";
  const began = performance.now();
  const targetFiles = target ?? (await fetchBundled("target"));
  const drafterFiles = drafter ?? (target ? null : await fetchBundled("drafter"));
  engine = await Engine.load(targetFiles, drafterFiles);
  const ms = performance.now() - began;
  const info = JSON.parse(engine.info());
  info.adapter = await adapterName(info.adapter);
  $("engine-info").textContent =
    `${info.adapter} · target ${(info.target_parameters / 1e6).toFixed(1)}M parameters` +
    (info.drafter_parameters ? ` · drafter ${(info.drafter_parameters / 1e6).toFixed(1)}M` : " · no drafter") +
    ` · context ${info.context}`;
  $("load-status").textContent = `loaded in ${(ms / 1000).toFixed(2)} s`;
  setBusy(false);
  return { ms, info };
}

function setBusy(busy) {
  $("run").disabled = busy;
  $("race").disabled = busy;
  $("load").disabled = busy;
}

function options(mode) {
  return {
    prompt: $("prompt").value,
    mode: mode ?? $("mode").value,
    lookahead: Number($("lookahead").value),
    targets: Number($("targets").value),
    max_tokens: Number($("max-tokens").value),
    temperature: Number($("temperature").value),
    seed: Number($("seed").value),
  };
}

/** One generation on the page, drawn live; resolves to its outcome. */
async function generate(request) {
  const lanes = [];
  if (request.mode !== "nonsi") lanes.push({ name: "drafter", role: "drafter" });
  const targets = request.mode === "dsi" ? request.targets : 1;
  for (let i = 0; i < targets; i += 1) lanes.push({ name: `target ${i}`, role: "target" });
  timeline = new Timeline($("timeline"), lanes);
  $("output").textContent = "";
  live.started = performance.now();
  live.ended = null;
  live.tokens = 0;
  const outcome = JSON.parse(
    await engine.generate(JSON.stringify(request), (json) => {
      const event = JSON.parse(json);
      if (event.type === "tokens") {
        $("output").textContent = event.text;
        live.tokens += event.tokens.length;
      } else {
        timeline.add(event);
      }
    }),
  );
  live.ended = performance.now();
  timeline.draw();
  updateCounters();
  const c = outcome.counters;
  $("status").textContent =
    `${outcome.tokens.length} tokens in ${(outcome.total_ms / 1000).toFixed(2)} s · ` +
    `${outcome.tokens_per_s.toFixed(1)} tokens/s · first token ${outcome.ttft_ms.toFixed(0)} ms · ` +
    `${c.accepted_tokens}/${c.draft_tokens} drafts accepted · ${c.jobs_preempted} preempted`;
  return outcome;
}

/** Non-SI, SI and DSI one after the other with the same settings. */
async function race() {
  const rows = $("race-table").querySelector("tbody");
  rows.replaceChildren();
  const runs = {};
  for (const mode of MODES) {
    const outcome = await generate(options(mode));
    runs[mode] = outcome;
    const row = document.createElement("tr");
    const c = outcome.counters;
    for (const cell of [
      mode,
      outcome.tokens_per_s.toFixed(2),
      `${outcome.ttft_ms.toFixed(0)} ms`,
      `${c.accepted_tokens}/${c.draft_tokens}`,
      c.jobs_preempted,
      outcome.text,
    ]) {
      const td = document.createElement("td");
      td.textContent = cell;
      if (cell === outcome.text) td.className = "text";
      row.append(td);
    }
    rows.append(row);
  }
  const same = MODES.every((m) => JSON.stringify(runs[m].tokens) === JSON.stringify(runs.nonsi.tokens));
  $("race-verdict").textContent = same
    ? "identical tokens in all three modes"
    : "the modes disagree: please report this";
  return { runs, identical: same };
}

function updateCounters() {
  if (!timeline) return;
  const a = timeline.acceptance;
  $("c-tokens").textContent = live.tokens;
  $("c-acceptance").textContent = a.judged ? `${((100 * a.accepted) / a.judged).toFixed(0)}%` : "–";
  $("c-preempted").textContent = timeline.preempted;
  $("c-wasted").textContent = timeline.wasted;
  $("c-running").textContent = timeline.running;
  if (live.started !== null && live.tokens > 0) {
    const seconds = ((live.ended ?? performance.now()) - live.started) / 1000;
    $("c-rate").textContent = (live.tokens / seconds).toFixed(1);
  }
}

function showError(error) {
  const message = error && error.message ? error.message : String(error);
  $("status").textContent = `error: ${message}`;
  $("status").className = "error";
  $("load-status").textContent = "";
  setBusy(!engine);
  window.__result = { error: message };
}

async function main() {
  for (const [key, id] of [["prompt", "prompt"], ["max_tokens", "max-tokens"], ["lookahead", "lookahead"], ["targets", "targets"]]) {
    if (params.has(key)) $(id).value = params.get(key);
  }
  setUpPickers();
  setInterval(updateCounters, 200);
  if (!navigator.gpu) {
    throw new Error("this browser has no WebGPU: use Chrome or Edge 113+, Safari 26+, or Chromium with --enable-unsafe-webgpu");
  }
  if (!(await navigator.gpu.requestAdapter())) {
    throw new Error("WebGPU found no adapter on this machine (Chromium: try --enable-unsafe-webgpu)");
  }
  let wasm;
  try {
    wasm = await import("./pkg/dsi_web.js");
  } catch (error) {
    throw new Error(`the browser engine is not built here (${error.message}): run bash scripts/build-web.sh`);
  }
  await wasm.default();
  Engine = wasm.Engine;
  const loaded = await load(null, null);
  $("prompt-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    setBusy(true);
    try {
      await generate(options());
    } catch (error) {
      showError(error);
    }
    setBusy(false);
  });
  $("race").addEventListener("click", async () => {
    setBusy(true);
    try {
      await race();
    } catch (error) {
      showError(error);
    }
    setBusy(false);
  });
  if (params.get("autorun") === "1") {
    setBusy(true);
    // `rounds=N` races N times: the first meets every shader for the first
    // time (compiled on first use), the last runs warm.
    const rounds = Math.max(1, Number(params.get("rounds") ?? 1));
    const first = await race();
    let last = first;
    for (let i = 1; i < rounds; i += 1) last = await race();
    const { runs, identical } = last;
    setBusy(false);
    window.__result = {
      adapter: loaded.info.adapter,
      load_ms: loaded.ms,
      rounds,
      identical: identical && first.identical,
      first_round: Object.fromEntries(
        MODES.map((m) => [m, { tokens_per_s: first.runs[m].tokens_per_s, ttft_ms: first.runs[m].ttft_ms }]),
      ),
      tokens: Object.fromEntries(MODES.map((m) => [m, runs[m].tokens])),
      runs: Object.fromEntries(
        MODES.map((m) => [m, {
          tokens_per_s: runs[m].tokens_per_s,
          ttft_ms: runs[m].ttft_ms,
          total_ms: runs[m].total_ms,
          counters: runs[m].counters,
        }]),
      ),
      lanes: [...document.querySelectorAll("#timeline .lane")].map((g) => g.dataset.role),
      jobs: Object.fromEntries(
        ["draft", "accepted", "rejected", "preempted", "stale"].map((k) => [
          k,
          document.querySelectorAll(`#timeline rect.job.${k}`).length,
        ]),
      ),
    };
  }
}

/** The adapter as the browser describes it (wgpu's name is empty there). */
async function adapterName(fallback) {
  const adapter = await navigator.gpu.requestAdapter();
  const info = adapter && adapter.info;
  if (!info) return fallback;
  const parts = [info.vendor, info.architecture, info.description].filter((p) => p);
  return parts.length ? parts.join(" ") : fallback;
}

main().catch(showError);

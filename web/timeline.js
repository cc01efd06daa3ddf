// The live timeline: one lane for the drafter and one per target server,
// fed by the scheduler's job events (GET /v1/dashboard/timeline, SSE).
// Each job is a rectangle from its start to its end, coloured by outcome.
// Jobs that run at once on one worker (the members of a batched forward)
// stack in rows within its lane, one bar per member.

const SVG = "http://www.w3.org/2000/svg";
const LANE_H = 34;
const LABEL_W = 90;

export class Timeline {
  constructor(svg, lanes) {
    this.svg = svg;
    this.lanes = lanes; // [{name, role}]
    this.reset();
  }

  /** Forgets every job: a new generation starts an empty picture. */
  reset() {
    this.jobs = new Map(); // "request:job" -> {lane, row, t0, t1, outcome}
    this.depth = this.lanes.map(() => 1); // rows each lane has needed
    this.queued = [];
    this.offsets = new Map(); // request -> page ms at the request's t_ms = 0
    this.origin = null;
    this.span = 1000;
    this.counts = { accepted: 0, rejected: 0, preempted: 0, stale: 0, draft: 0, queued: 0 };
    this.acceptance = { judged: 0, accepted: 0 };
    this.wasted = 0;
    this.preempted = 0; // verification jobs only, as in `usage`
    this.running = 0;
    this.draw();
  }

  laneIndex(device) {
    return this.lanes.findIndex((l) => l.name === device);
  }

  /** The lowest row of `lane` that no running job holds. */
  freeRow(lane) {
    const taken = new Set();
    for (const job of this.jobs.values()) {
      if (job.lane === lane && job.t1 === null) taken.add(job.row);
    }
    let row = 0;
    while (taken.has(row)) row += 1;
    return row;
  }

  /** Page time of a record: its request's offset plus its own t_ms. */
  time(record) {
    if (!this.offsets.has(record.request)) {
      this.offsets.set(record.request, performance.now() - record.t_ms);
    }
    const t = this.offsets.get(record.request) + record.t_ms;
    if (this.origin === null) this.origin = t;
    return t - this.origin;
  }

  /** Applies one timeline record. */
  add(record) {
    const t = this.time(record);
    const key = `${record.request}:${record.job}`;
    switch (record.kind) {
      case "queued":
        this.queued.push(t);
        this.counts.queued += 1;
        break;
      case "started": {
        const lane = this.laneIndex(record.device);
        if (lane < 0) return;
        const drafter = this.lanes[lane].role === "drafter";
        const row = this.freeRow(lane);
        this.depth[lane] = Math.max(this.depth[lane], row + 1);
        this.jobs.set(key, { lane, row, t0: t, t1: null, outcome: "running", drafter });
        this.running += 1;
        break;
      }
      case "finished":
      case "preempted":
      case "stale":
      case "failed": {
        const job = this.jobs.get(key);
        if (!job || job.t1 !== null) return;
        job.t1 = t;
        this.running = Math.max(0, this.running - 1);
        job.outcome = outcomeOf(record, job);
        this.counts[job.outcome] = (this.counts[job.outcome] || 0) + 1;
        if (!job.drafter && record.kind === "finished" && record.accepted !== null) {
          // Drafts judged: up to and including the first rejected one.
          const drafts = record.end - record.start;
          this.acceptance.judged += Math.min(record.accepted + 1, drafts);
          this.acceptance.accepted += record.accepted;
        }
        if (!job.drafter && (job.outcome === "preempted" || job.outcome === "stale")) {
          this.wasted += 1;
        }
        if (!job.drafter && job.outcome === "preempted") this.preempted += 1;
        break;
      }
      default:
        return;
    }
    if (t > this.span) {
      while (t > this.span) this.span *= 2;
    }
    this.schedule();
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  draw() {
    const width = Math.max(this.svg.clientWidth || 900, 300);
    const height = LANE_H * (this.lanes.length + 1) + 10;
    this.svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    this.svg.style.height = `${height}px`;
    const plot = width - LABEL_W - 10;
    const x = (t) => LABEL_W + (t / this.span) * plot;
    const nodes = [];
    const lane = (i, name, role) => {
      const g = el("g", { class: "lane", "data-role": role, "data-name": name });
      g.append(el("rect", { class: "lane-bg", x: LABEL_W, y: i * LANE_H + 4, width: plot, height: LANE_H - 8 }));
      const label = el("text", { class: "lane-label", x: 4, y: i * LANE_H + LANE_H / 2 + 4 });
      label.textContent = name;
      g.append(label);
      return g;
    };
    const lanes = this.lanes.map((l, i) => lane(i, l.name, l.role));
    const queueLane = lane(this.lanes.length, "queue", "queue");
    for (const job of this.jobs.values()) {
      const t1 = job.t1 ?? Math.max(job.t0 + 1, this.now());
      const rowH = (LANE_H - 12) / this.depth[job.lane];
      const rect = el("rect", {
        class: `job ${job.outcome}`,
        x: x(job.t0),
        y: job.lane * LANE_H + 6 + job.row * rowH,
        width: Math.max(2, x(t1) - x(job.t0)),
        height: Math.max(1, rowH - (this.depth[job.lane] > 1 ? 1 : 0)),
        rx: 2,
      });
      lanes[job.lane].append(rect);
    }
    for (const t of this.queued) {
      queueLane.append(el("rect", { class: "job queued", x: x(t), y: this.lanes.length * LANE_H + 8, width: 2, height: LANE_H - 16 }));
    }
    nodes.push(...lanes, queueLane);
    this.svg.replaceChildren(...nodes);
  }

  now() {
    return this.origin === null ? 0 : performance.now() - this.origin;
  }
}

function outcomeOf(record, job) {
  if (record.kind === "preempted") return "preempted";
  if (record.kind === "stale" || record.kind === "failed") return "stale";
  if (job.drafter) return "draft";
  if (record.accepted === null || record.accepted === undefined) return "accepted";
  return record.accepted >= record.end - record.start ? "accepted" : "rejected";
}

function el(name, attributes) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
  return node;
}

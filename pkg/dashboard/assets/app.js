// Skein dashboard: the job list (polled) and a job's page (server-sent
// events). No framework, nothing loaded from elsewhere.
"use strict";
(function () {
  const main = document.getElementById("main");
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k);
    return e;
  };
  const dur = (ms) => {
    if (!(ms >= 0)) return "–";
    if (ms < 1000) return Math.round(ms) + " ms";
    const s = ms / 1000;
    if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + "m " + Math.round(s - m * 60) + "s";
    const h = Math.floor(m / 60);
    return h + "h " + (m - h * 60) + "m";
  };
  const rate = (r) => (r >= 100 ? r.toFixed(0) : r.toFixed(1)) + " tasks/s";
  const terminal = (s) => s === "done" || s === "failed" || s === "cancelled" || s === "timed_out";
  const bar = (j) => {
    const t = Math.max(j.total, 1), b = el("div", { class: "bar" });
    for (const [cls, n] of [["d", j.done], ["f", j.failed], ["r", j.running]]) {
      const s = el("span", { class: cls });
      s.style.width = (100 * n / t) + "%";
      b.append(s);
    }
    return b;
  };
  let me = { read: true, cancel: false };
  const who = () => fetch("/api/me").then((r) => r.json()).then((m) => {
    me = m;
    document.getElementById("who").textContent = m.user ? "signed in as " + m.user + (m.cancel ? " (may cancel)" : " (read-only)") : "read-only";
  }).catch(() => {});

  // ---- the job list ----
  function listPage() {
    document.title = "Skein jobs";
    const body = el("tbody");
    const table = el("table", { class: "jobs", id: "jobs" },
      el("thead", {}, el("tr", {}, ...["job", "state", "function", "progress", "rate", "failures", "age"].map((h) => el("th", { text: h })))), body);
    const empty = el("p", { class: "muted", text: "No jobs yet: submit one with --bus pointing at this coordinator's bus." });
    main.replaceChildren(table, empty);
    const draw = (jobs) => {
      empty.hidden = jobs.length > 0;
      body.replaceChildren(...jobs.map((j) => {
        const failures = [j.failed ? j.failed + " failed" : "", j.retried ? j.retried + " retried" : ""].filter(Boolean).join(", ") || "none";
        const tr = el("tr", { "data-job": j.id, "data-state": j.state, "data-done": String(j.done), "data-total": String(j.total) },
          el("td", {}, el("a", { href: "/jobs/" + encodeURIComponent(j.id), text: j.id })),
          el("td", {}, el("span", { class: "state " + j.state, text: j.state })),
          el("td", { text: j.function + (j.reduce_function ? " → " + j.reduce_function : "") }),
          el("td", { class: "progress" }, bar(j), el("span", { class: "bar-label", text: j.done + "/" + j.total + (j.running ? ", " + j.running + " running" : "") })),
          el("td", { text: rate(j.rate) }),
          el("td", { text: failures }),
          el("td", { text: dur(Date.now() - j.submitted_ms) }));
        return tr;
      }));
    };
    const poll = () => fetch("/api/jobs").then((r) => r.ok ? r.json() : Promise.reject(r.status)).then(draw)
      .catch((e) => { empty.hidden = false; empty.textContent = "Cannot read the jobs (" + e + ")."; })
      .finally(() => setTimeout(poll, 1000));
    poll();
  }

  // ---- a job's page ----
  const COLORS = { done: "#2e7d32", failed: "#c62828", retried: "#ef8a00", running: "#1e63c8", queued: "#c9ced6", arrival: "#7b3fb0" };
  function jobPage(id) {
    document.title = "Skein job " + id;
    const state = el("span", { class: "state", text: "…" });
    const cancelBtn = el("button", { class: "cancel", id: "cancel", type: "button", text: "Cancel job" });
    cancelBtn.hidden = true;
    const head = el("div", { class: "job-head" }, el("h1", { text: id }), state, cancelBtn);
    const progress = el("div", { id: "progress" }, el("div", { class: "bar" }));
    const stats = el("div", { class: "stats" });
    const jobError = el("div", { class: "error", id: "job-error" });
    jobError.hidden = true;
    const canvas = el("canvas", { id: "timeline", "data-bars": "0", "data-running": "0", "data-arrivals": "0" });
    const legend = el("div", { class: "legend" }, ...[["queued", "waiting in the queue"], ["running", "running"], ["done", "done"],
      ["failed", "failed"], ["retried", "failed, retried"], ["arrival", "reducer input arrived"]].map(([k, t]) => {
      const i = el("i"); i.style.background = COLORS[k]; return el("span", {}, i, t);
    }));
    const failTitle = el("h2", { text: "Failed attempts" });
    const failures = el("div", { id: "failures" });
    const failNone = el("p", { class: "muted", text: "None so far." });
    main.replaceChildren(head, progress, stats, jobError,
      el("h2", { text: "Timeline" }), el("div", { class: "timeline-wrap" }, canvas, legend), failTitle, failNone, failures);

    const attempts = new Map(); // "k:i:a" -> attempt
    const latest = new Map(); // "k:i" -> newest attempt number
    let arrivals = [], reducers = 0, st = null, stAt = 0, ended = false, dirty = true, nFail = 0;
    const nowRel = () => st ? (terminal(st.state) ? st.elapsed_ms : st.elapsed_ms + (performance.now() - stAt)) : 0;

    const stat = (label, value) => el("div", {}, el("small", { text: label }), el("b", { text: value }));
    function showStatus(s) {
      st = s; stAt = performance.now();
      state.className = "state " + s.state; state.textContent = s.state;
      main.dataset.state = s.state; main.dataset.done = String(s.done); main.dataset.total = String(s.total);
      progress.replaceChildren(bar(s));
      stats.replaceChildren(stat("progress", s.done + "/" + s.total), stat("running", String(s.running)),
        stat("failed", String(s.failed)), stat("retried", String(s.retried)), stat("rate", rate(s.rate)),
        stat("elapsed", dur(s.elapsed_ms)), stat("function", s.function + (s.reduce_function ? " → " + s.reduce_function : "")),
        stat("pool", s.pool), stat("kind", s.kind));
      if (s.error) {
        jobError.hidden = false;
        jobError.textContent = "The job " + s.state + (typeof s.failed_task === "number" ? " (task " + s.failed_task + ")" : "") + ": " +
          s.error.kind + (s.error.type ? ": " + s.error.type : "") + ": " + s.error.message;
      }
      cancelBtn.hidden = !me.cancel || terminal(s.state);
      dirty = true;
    }
    let armed = 0;
    cancelBtn.addEventListener("click", () => {
      if (Date.now() - armed > 3000) { armed = Date.now(); cancelBtn.textContent = "Click again to cancel"; return; }
      cancelBtn.disabled = true; cancelBtn.textContent = "Cancelling…";
      fetch("/api/jobs/" + encodeURIComponent(id) + "/cancel", { method: "POST", headers: { "X-Skein-Request": "1" } })
        .then((r) => r.ok ? r.json() : r.text().then((t) => Promise.reject(t)))
        .then(() => { cancelBtn.textContent = "Cancelled"; })
        .catch((e) => { cancelBtn.disabled = false; cancelBtn.textContent = "Cancel failed: " + e; });
    });

    function addFailure(ev, a) {
      nFail++;
      failNone.hidden = true;
      const e = ev.err || { kind: "error", message: "(no error sent)" };
      const box = el("div", { class: "failure", "data-task": String(ev.i), "data-attempt": String(ev.a) },
        el("div", { class: "what", text: (ev.k === "reduce" ? "reducer " : "task ") + ev.i + ", attempt " + ev.a + (ev.w ? " on " + ev.w : "") +
          (a.f && a.s ? " after " + dur(a.f - a.s) : "") }),
        el("div", { class: "msg", text: e.kind + (e.type ? ": " + e.type : "") + ": " + e.message }));
      if (e.stack) box.append(el("details", { open: "" }, el("summary", { text: "traceback" }), el("pre", { class: "stack", text: e.stack })));
      if (ev.log) box.append(el("details", {}, el("summary", { text: "output" }), el("pre", { text: ev.log })));
      if (failures.childElementCount < 200) failures.append(box);
      failTitle.textContent = "Failed attempts (" + nFail + ")";
      a.box = box;
    }
    function onEvent(ev) {
      const key = ev.k + ":" + ev.i + ":" + ev.a;
      let a = attempts.get(key);
      if (!a) { a = { k: ev.k, i: ev.i, a: ev.a, state: "running" }; attempts.set(key, a); }
      const tk = ev.k + ":" + ev.i;
      const prev = latest.get(tk) || 0;
      latest.set(tk, Math.max(prev, ev.a));
      if (ev.a > prev) { // a newer attempt: the older ones that failed were retried
        for (let n = 1; n < ev.a; n++) { const o = attempts.get(ev.k + ":" + ev.i + ":" + n); if (o && o.box) o.box.classList.add("retried"); }
      }
      if (ev.q) a.q = ev.q;
      if (ev.s) a.s = ev.s;
      if (ev.f) a.f = ev.f;
      if (ev.w) a.w = ev.w;
      if (ev.t === "done" && a.state !== "failed") a.state = "done";
      if (ev.t === "failed" && a.state !== "done" && a.state !== "failed") {
        a.state = "failed"; addFailure(ev, a);
        if ((latest.get(tk) || 0) > ev.a) a.box.classList.add("retried");
      }
      if (ev.k === "reduce") reducers = Math.max(reducers, ev.i + 1);
      if (ev.arr) arrivals = arrivals.concat(ev.arr);
      dirty = true;
    }

    function draw() {
      if (!dirty || !st) return;
      dirty = false;
      const dpr = window.devicePixelRatio || 1;
      const rows = Math.max(st.kind === "mapreduce" ? st.total + Math.max(reducers, 1) : st.total, 1);
      const cssW = canvas.clientWidth || 800;
      const cssH = Math.min(Math.max(rows * 3, 180), 480);
      canvas.style.height = cssH + "px";
      canvas.width = Math.round(cssW * dpr); canvas.height = Math.round(cssH * dpr);
      const g = canvas.getContext("2d");
      g.setTransform(dpr, 0, 0, dpr, 0, 0);
      g.clearRect(0, 0, cssW, cssH);
      const top = arrivals.length ? 12 : 2, bottom = 18, left = 2, right = 4;
      const plotH = cssH - top - bottom, plotW = cssW - left - right;
      const now = nowRel();
      let tMax = Math.max(now, 1);
      for (const a of attempts.values()) if (a.f > tMax) tMax = a.f;
      const x = (t) => left + Math.max(0, Math.min(1, t / tMax)) * plotW;
      const rowH = plotH / rows, h = Math.max(1, rowH * 0.8);
      const row = (a) => a.k === "reduce" ? st.total + a.i : a.i;
      let bars = 0, running = 0;
      for (const a of attempts.values()) {
        const y = top + row(a) * rowH;
        const s = a.s || a.f || a.q;
        if (a.q && s && s > a.q) { g.fillStyle = COLORS.queued; g.fillRect(x(a.q), y, Math.max(x(s) - x(a.q), 0.5), h); }
        let color = COLORS[a.state], end = a.f;
        if (a.state === "failed" && (latest.get(a.k + ":" + a.i) || 0) > a.a) color = COLORS.retried;
        if (a.state === "running") { end = terminal(st.state) ? (a.f || now) : now; running++; }
        if (!s) continue;
        g.fillStyle = color;
        g.fillRect(x(s), y, Math.max(x(end || s) - x(s), 1), h);
        bars++;
      }
      g.fillStyle = COLORS.arrival;
      for (const t of arrivals) g.fillRect(x(t), 1, 1, top - 3);
      // Time axis.
      g.fillStyle = "#69727d"; g.font = "11px system-ui, sans-serif"; g.textBaseline = "bottom";
      const step = niceStep(tMax / 6);
      for (let t = 0; t <= tMax; t += step) {
        g.fillRect(x(t), cssH - bottom, 1, 4);
        g.fillText(dur(t), Math.min(x(t) + 2, cssW - 40), cssH - 1);
      }
      canvas.dataset.bars = String(bars); canvas.dataset.running = String(running); canvas.dataset.arrivals = String(arrivals.length);
    }
    function niceStep(v) {
      const p = Math.pow(10, Math.floor(Math.log10(Math.max(v, 1))));
      for (const m of [1, 2, 5, 10]) if (p * m >= v) return p * m;
      return p * 10;
    }
    setInterval(() => { if (st && !terminal(st.state)) dirty = true; draw(); }, 250);
    window.addEventListener("resize", () => { dirty = true; });

    // A job this coordinator does not hold: say so, follow nothing.
    fetch("/api/jobs/" + encodeURIComponent(id)).then((r) => {
      if (r.status === 404) {
        main.replaceChildren(el("p", { class: "error", id: "unknown", text: "This coordinator holds no job " + id +
          " (finished jobs are kept for its --retention; with several coordinators, another may hold it)." }));
        return;
      }
      follow();
    }).catch(follow);
    function follow() {
      const es = new EventSource("/api/jobs/" + encodeURIComponent(id) + "/events");
      es.addEventListener("status", (m) => showStatus(JSON.parse(m.data)));
      es.addEventListener("events", (m) => { for (const ev of JSON.parse(m.data)) onEvent(ev); });
      es.addEventListener("end", (m) => {
        ended = true; es.close();
        const d = JSON.parse(m.data);
        showStatus(d.status);
        draw(); // the last picture, before the page says it ended
        main.dataset.ended = "true";
        if (d.note) main.append(el("p", { class: "muted", text: d.note }));
      });
      es.onerror = () => {
        if (ended) return;
        if (es.readyState === EventSource.CLOSED) main.append(el("p", { class: "muted", text: "The live stream closed; reload to follow the job again." }));
      };
    }
  }

  who().finally(() => {
    const m = location.pathname.match(/^\/jobs\/([^/]+)$/);
    if (m) jobPage(decodeURIComponent(m[1])); else listPage();
  });
})();

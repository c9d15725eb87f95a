// The surestep dashboard: plain JavaScript, no build step, no innerHTML with data.
"use strict";

(() => {
  const TOKEN_KEY = "surestep-token";
  let STATUSES = ["running", "pending", "completed", "failed", "cancelled"];
  const PERSON = "person";
  const LIST_REFRESH_MS = 2000;
  const STORE_REFRESH_MS = 10000; // each refresh counts every run: less often than the list
  const RUN_REFRESH_MS = 1000;
  const GROUP_AT = 100; // a run with more steps shows them grouped by name
  const PAGE = 200; // runs a page of the list shows
  const view = document.getElementById("view");
  const notice = document.getElementById("notice");
  let info = { actions: false };
  let timer = null;
  let routeKey = "";

  // A token given once as ?token=... is kept for this tab and removed from the address bar.
  const params = new URLSearchParams(location.search);
  if (params.has("token")) {
    sessionStorage.setItem(TOKEN_KEY, params.get("token"));
    history.replaceState(null, "", location.pathname + location.hash);
  }

  // -- small helpers

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "style") Object.assign(node.style, value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function pill(status) {
    return h("span", { class: `pill s-${status}`, "data-status": status }, status);
  }

  function pad(n, width = 2) {
    return String(n).padStart(width, "0");
  }

  function fmtTime(ts) {
    if (!ts) return "";
    const d = new Date(ts * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function fmtClock(ts) {
    const d = new Date(ts * 1000);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  }

  // Rounded to what is shown (as the CLI's format_duration): 3599.9996 s is "1h 00m".
  function fmtDuration(s) {
    if (s === null || s === undefined) return "";
    if (Math.round(s * 1000) < 1000) return `${Math.round(s * 1000)} ms`;
    if (Math.round(s * 100) < 6000) return `${s.toFixed(2)} s`;
    const whole = Math.round(s);
    const m = Math.floor(whole / 60);
    if (m < 60) return `${m}m ${pad(whole % 60)}s`;
    const hm = m + (whole % 60 >= 30 ? 1 : 0);
    return `${Math.floor(hm / 60)}h ${pad(hm % 60)}m`;
  }

  // What an unfinished run waits for ("sleep until ...", "event approved"), beside its status.
  function statusCell(run) {
    const text = run.status_text || run.status;
    const detail = text.startsWith(`${run.status}: `) ? text.slice(run.status.length + 2) : text === run.status ? "" : text;
    return [pill(run.status), detail ? h("span", { class: "hint status-text" }, ` ${detail}`) : null];
  }

  function json(value) {
    if (value === undefined) return "";
    const flat = JSON.stringify(value);
    return flat.length <= 80 ? flat : JSON.stringify(value, null, 2);
  }

  // A step's or run's input, [args, kwargs], the way the call was written: ("o-1", ["book"], n=2).
  function call(args, kwargs) {
    const parts = (args || []).map((a) => JSON.stringify(a));
    for (const [k, v] of Object.entries(kwargs || {})) parts.push(`${k}=${JSON.stringify(v)}`);
    const text = `(${parts.join(", ")})`;
    return text.length <= 120 ? text : JSON.stringify({ args, kwargs }, null, 2);
  }

  function stepInput(input) {
    if (input === null || input === undefined) return "()";
    const pair = Array.isArray(input) && input.length === 2 && Array.isArray(input[0]) &&
      input[1] !== null && typeof input[1] === "object" && !Array.isArray(input[1]);
    return pair ? call(input[0], input[1]) : json(input);
  }

  function say(message, ok = false) {
    notice.textContent = message;
    notice.className = ok ? "notice ok" : "notice";
    notice.hidden = !message;
  }

  async function api(path, options = {}) {
    const headers = Object.assign({}, options.headers || {});
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(path, Object.assign({}, options, { headers, cache: "no-store" }));
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    if (!response.ok) {
      const error = new Error((body && body.error) || `${response.status} ${response.statusText}`);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function post(path, body) {
    return api(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  }

  function schedule(fn, ms) {
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (document.hidden) schedule(fn, ms);
      else fn();
    }, ms);
  }

  function failed(error) {
    if (error.status === 401) {
      askToken();
      return true;
    }
    say(error.message);
    return false;
  }

  function askToken() {
    clearTimeout(timer);
    routeKey = "";
    const input = h("input", { type: "text", id: "token", placeholder: "token", autocomplete: "off" });
    view.replaceChildren(
      h("h1", {}, "This dashboard needs its token"),
      h("form", {
        class: "toolbar",
        onsubmit: (event) => {
          event.preventDefault();
          sessionStorage.setItem(TOKEN_KEY, input.value.trim());
          say("");
          start();
        },
      }, input, h("button", { class: "act", type: "submit" }, "Open")),
      h("p", { class: "hint" }, "The token was given to surestep ui with --token (or SURESTEP_UI_TOKEN)."),
    );
  }

  // -- routing: #/?status=&q= (the runs), #/runs/ID (one run) and #/store (its size, retention)

  function parseHash() {
    const hash = location.hash.replace(/^#/, "") || "/";
    const [path, query] = hash.split("?");
    return { path, query: new URLSearchParams(query || "") };
  }

  function route() {
    const { path, query } = parseHash();
    const match = path.match(/^\/runs\/([^/]+)$/);
    const key = match ? `run:${match[1]}` : path === "/store" ? "store" : "list";
    if (key === routeKey) return;
    routeKey = key;
    clearTimeout(timer);
    say("");
    for (const [id, here] of [["nav-runs", key === "list"], ["nav-store", key === "store"]]) {
      if (here) document.getElementById(id).setAttribute("aria-current", "page");
      else document.getElementById(id).removeAttribute("aria-current");
    }
    if (match) runPage(decodeURIComponent(match[1]));
    else if (key === "store") storePage();
    else listPage(query.get("status") || "", query.get("q") || "", query.get("workflow") || "");
  }

  // -- the runs

  function listPage(status, q, workflow) {
    // "person": the waiting runs that wait for a person's answer (ctx.wait_for_user);
    // pages: the "before" cursor of each page shown so far (null: the newest runs)
    const state = {
      status: STATUSES.includes(status) || status === PERSON ? status : "", q, workflow, pages: [null],
    };
    const seenWorkflows = new Set();
    const body = h("tbody", { id: "runs-body" });
    const live = h("span", { class: "live", id: "live" });
    const filters = h("div", { class: "filters", role: "group", "aria-label": "status" },
      ["", ...STATUSES, PERSON].map((s) => h("button", {
        type: "button",
        "data-status": s,
        "aria-pressed": String(s === state.status),
        onclick: () => {
          state.status = s;
          for (const b of filters.children) b.setAttribute("aria-pressed", String(b.dataset.status === s));
          state.pages = [null];
          remember();
          load();
        },
      }, s === PERSON ? "waiting for a person" : s || "all")));
    let debounce = null;
    const search = h("input", {
      type: "search",
      id: "search",
      placeholder: "Search run, session or user id",
      value: state.q,
      oninput: () => {
        clearTimeout(debounce);
        debounce = setTimeout(() => {
          state.q = search.value;
          state.pages = [null];
          remember();
          load();
        }, 200);
      },
    });
    const schedules = h("section", { id: "schedules", hidden: true });
    const names = h("datalist", { id: "workflow-names" });
    const byWorkflow = h("input", {
      type: "search",
      id: "workflow",
      list: "workflow-names",
      placeholder: "Workflow",
      value: state.workflow,
      oninput: () => {
        clearTimeout(debounce);
        debounce = setTimeout(() => {
          state.workflow = byWorkflow.value.trim();
          state.pages = [null];
          remember();
          load();
        }, 200);
      },
    });
    const newer = h("button", {
      class: "act", type: "button", id: "newer", disabled: true,
      onclick: () => { state.pages.pop(); load(); },
    }, "← Newer");
    const older = h("button", {
      class: "act", type: "button", id: "older", disabled: true,
      onclick: () => { if (state.next) { state.pages.push(state.next); load(); } },
    }, "Older →");
    const pageNo = h("span", { class: "hint", id: "page" });
    const pager = h("div", { class: "pager", hidden: true }, newer, pageNo, older);
    view.replaceChildren(
      h("h1", {}, "Runs"),
      h("div", { class: "toolbar" }, filters, byWorkflow, names, search, live),
      h("table", { id: "runs" },
        h("thead", {}, h("tr", {},
          ["Run", "Workflow", "Status", "Started", "Duration", "Attempt", "Session", "User"]
            .map((t) => h("th", {}, t)))),
        body),
      pager,
      schedules,
    );

    function remember() {
      const query = new URLSearchParams();
      if (state.status) query.set("status", state.status);
      if (state.workflow) query.set("workflow", state.workflow);
      if (state.q) query.set("q", state.q);
      const text = query.toString();
      history.replaceState(null, "", `#/${text ? `?${text}` : ""}`);
    }

    async function load() {
      const query = new URLSearchParams({ limit: String(PAGE) });
      if (state.status === PERSON) query.set("waiting_for", PERSON);
      else if (state.status) query.set("status", state.status);
      if (state.workflow) query.set("workflow", state.workflow);
      if (state.q.trim()) query.set("q", state.q.trim());
      const before = state.pages[state.pages.length - 1];
      if (before) query.set("before", before);
      try {
        const data = await api(`/api/runs?${query}`);
        if (routeKey !== "list") return;
        say("");
        body.replaceChildren(...renderRuns(data.runs, true));
        renderSchedules(schedules, (await api("/api/schedules")).schedules);
        for (const run of data.runs) {
          if (!seenWorkflows.has(run.workflow)) {
            seenWorkflows.add(run.workflow);
            names.append(h("option", { value: run.workflow }));
          }
        }
        state.next = data.next;
        older.disabled = !data.next;
        newer.disabled = state.pages.length <= 1;
        pager.hidden = state.pages.length <= 1 && !data.next; // one page: nothing to turn
        pageNo.textContent = `page ${state.pages.length}`;
        const running = data.runs.some((r) => !r.finished);
        live.className = running ? "live on" : "live";
        live.textContent = `${data.runs.length}${data.truncated ? "+" : ""} run${data.runs.length === 1 ? "" : "s"}` +
          (running ? " · live" : "");
      } catch (error) {
        if (failed(error)) return;
      }
      if (routeKey === "list") schedule(load, LIST_REFRESH_MS);
    }
    load();
  }

  // -- the store: its size, its runs by status, and the retention that applies

  function fmtBytes(n) {
    if (n < 1024) return `${n} B`;
    const units = ["KiB", "MiB", "GiB", "TiB"];
    let size = n / 1024;
    let unit = 0;
    while (size >= 1024 && unit < units.length - 1) { size /= 1024; unit += 1; }
    return `${size.toFixed(1)} ${units[unit]}`;
  }

  // The size facts: LMDB's used pages, data file and map; PostgreSQL's relations.
  function sizeFacts(size) {
    const fact = (id, k, v, title) => h("div", { class: "fact", id, title },
      h("span", { class: "k" }, k), h("span", { class: "mono" }, v));
    if (size.tables) {
      return [fact("size-total", "size", fmtBytes(size.total_bytes), "the total size of its tables, with their indexes")];
    }
    return [
      fact("size-used", "used", fmtBytes(size.used_bytes), "the last page in use × the page size"),
      fact("size-file", "data file", fmtBytes(size.file_bytes)),
      fact("size-map", "map size", fmtBytes(size.map_bytes), "the most the file may grow to"),
    ];
  }

  function storePage() {
    const facts = h("div", { class: "facts", id: "store-facts" });
    const counts = h("tbody", { id: "status-counts" });
    const tables = h("section", { id: "store-tables", hidden: true });
    const retention = h("section", { id: "retention" });
    view.replaceChildren(
      h("h1", {}, "Store"),
      facts,
      h("h2", {}, "Runs by status"),
      h("table", { class: "counts", id: "runs-by-status" },
        h("thead", {}, h("tr", {}, h("th", {}, "Status"), h("th", { class: "n" }, "Runs"))), counts),
      tables,
      retention,
    );

    async function load() {
      try {
        const [stats, policy] = await Promise.all([api("/api/stats"), api("/api/retention")]);
        if (routeKey !== "store") return;
        say("");
        const oldest = stats.oldest_finished;
        facts.replaceChildren(
          ...sizeFacts(stats.size),
          h("div", { class: "fact", id: "oldest-finished" }, h("span", { class: "k" }, "oldest finished run"),
            h("span", { class: "mono" }, oldest ? fmtTime(oldest) : "none"),
            oldest ? h("div", { class: "hint" }, `${fmtDuration(Date.now() / 1000 - oldest)} ago`) : null),
          h("div", { class: "fact", id: "purging", title: "purged runs whose records are still being deleted, a bounded batch at a time" },
            h("span", { class: "k" }, "purged, being deleted"), h("span", { class: "mono" }, String(stats.hidden))),
          h("div", { class: "fact", id: "default-retention", title: "how long a run finished under no policy of its own is kept" },
            h("span", { class: "k" }, "default retention"), h("span", { class: "mono" }, stats.default_retention)),
        );
        counts.replaceChildren(...Object.entries(stats.runs).map(([status, n]) =>
          h("tr", { class: "status-count", "data-status": status },
            h("td", {}, h("a", { href: `#/?status=${status}` }, pill(status))), h("td", { class: "n mono" }, String(n)))));
        tables.hidden = !stats.size.tables;
        if (stats.size.tables) {
          tables.replaceChildren(h("h2", {}, "Tables"), h("table", { class: "counts", id: "table-sizes" },
            h("thead", {}, h("tr", {}, h("th", {}, "Table"), h("th", { class: "n" }, "Size"))),
            h("tbody", {}, ...Object.entries(stats.size.tables).map(([name, n]) =>
              h("tr", {}, h("td", { class: "mono" }, name), h("td", { class: "n mono" }, fmtBytes(n)))))));
        }
        renderRetention(retention, policy);
      } catch (error) {
        if (failed(error)) return;
      }
      if (routeKey === "store") schedule(load, STORE_REFRESH_MS);
    }
    load();
  }

  // Each workflow's retention: those this server registered, then each recorded deployment.
  function renderRetention(box, policy) {
    const workflows = policy.workflows.length ? [
      h("h3", {}, "Workflows served here"),
      h("table", { id: "workflow-retention" },
        h("thead", {}, h("tr", {}, ["Workflow", "Versions", "Retention"].map((t) => h("th", {}, t)))),
        h("tbody", {}, ...policy.workflows.map((w) => h("tr", { class: "retention-row", "data-workflow": w.workflow },
          h("td", {}, w.workflow), h("td", { class: "mono" }, w.versions.join(", ")),
          h("td", { class: "mono retention" }, w.retention_text))))),
    ] : [];
    const deployments = policy.deployments.length
      ? h("table", { id: "deployment-retention" },
        h("thead", {}, h("tr", {}, ["Workflow", "Version", "Deployed", "In flight", "Retention"].map((t) => h("th", {}, t)))),
        h("tbody", {}, ...policy.deployments.map((d) => h("tr", {
          class: "deployment-row", "data-workflow": d.workflow, "data-version": d.version,
        },
          h("td", {}, h("a", { href: `#/?workflow=${encodeURIComponent(d.workflow)}` }, d.workflow)),
          h("td", { class: "mono" }, d.version), h("td", { class: "mono" }, fmtTime(d.time)),
          h("td", { class: "mono" }, String(d.in_flight)), h("td", { class: "mono retention" }, d.retention_text)))))
      : h("p", { class: "hint", id: "no-deployments" }, "No deployments recorded (surestep deploy MODULE records them).");
    box.replaceChildren(
      h("h2", {}, "Retention"),
      h("p", { class: "hint" },
        "A finished run is removed with its journal, logs and events once its retention has passed; " +
        "a child run goes with its parent. Runs finished under no policy of their own are kept for ",
        h("span", { class: "mono", id: "retention-default" }, policy.default), "."),
      ...workflows,
      h("h3", {}, "Deployments"),
      deployments,
    );
  }

  // The stored schedules, under the runs (the section stays hidden while there are none).
  function renderSchedules(box, schedules) {
    box.hidden = !schedules.length;
    box.replaceChildren(
      h("h2", {}, "Schedules"),
      h("table", { id: "schedules-table" },
        h("thead", {}, h("tr", {},
          ["Workflow", "Schedule", "Catch-up", "State", "Last tick", "Next tick"].map((t) => h("th", {}, t)))),
        h("tbody", {}, ...schedules.map((s) => h("tr", { class: "schedule-row", "data-workflow": s.workflow },
          h("td", {}, s.workflow),
          h("td", { class: "mono" }, s.cron ? `cron ${s.cron} (${s.timezone})` : `every ${s.every}s`),
          h("td", {}, s.catchup),
          h("td", {}, s.paused ? "paused" : "active"),
          h("td", { class: "mono" }, fmtTime(s.last_tick) || "-"),
          h("td", { class: "mono" }, fmtTime(s.next_tick) || "-"),
        )))),
    );
  }

  // Runs as table rows; with ``tree``, a child whose parent is listed comes right under it.
  function renderRuns(runs, tree = false) {
    if (!runs.length) return [h("tr", {}, h("td", { class: "empty", colspan: 8 }, "No runs"))];
    let ordered = runs.map((run) => ({ run, depth: 0 }));
    if (tree) {
      const listed = new Set(runs.map((r) => r.run_id));
      const children = new Map();
      for (const run of runs) {
        if (run.parent_id && listed.has(run.parent_id)) {
          if (!children.has(run.parent_id)) children.set(run.parent_id, []);
          children.get(run.parent_id).push(run);
        }
      }
      ordered = [];
      const place = (run, depth) => {
        ordered.push({ run, depth });
        for (const child of (children.get(run.run_id) || []).slice().reverse()) place(child, depth + 1);
      };
      for (const run of runs) if (!(run.parent_id && listed.has(run.parent_id))) place(run, 0);
    }
    return ordered.map(({ run, depth }) => h("tr", {
      class: `run-row${depth ? " child-row" : ""}`, "data-run-id": run.run_id, "data-depth": depth,
    },
      h("td", { class: "mono", style: depth ? { paddingLeft: `${10 + depth * 18}px` } : null },
        depth ? h("span", { class: "branch" }, "↳ ") : null,
        h("a", { class: "run-link", href: `#/runs/${run.run_id}` }, run.run_id),
        run.parent_id && !depth
          ? h("a", { class: "parent-link hint", href: `#/runs/${run.parent_id}`, title: `child of ${run.parent_id}` }, " ↑ parent")
          : null),
      h("td", {}, run.workflow),
      h("td", {}, ...statusCell(run)),
      h("td", { class: "mono" }, fmtTime(run.created_at)),
      h("td", { class: "num" }, fmtDuration(run.duration)),
      h("td", { class: "num" }, run.attempt),
      h("td", { class: "mono" }, run.session_id || ""),
      h("td", { class: "mono" }, run.user_id || ""),
    ));
  }

  // -- one run

  function runPage(runId) {
    const key = `run:${runId}`;
    const title = h("h1", {}, "Run ", h("span", { class: "mono", id: "run-id" }, runId));
    const facts = h("div", { class: "facts", id: "facts" });
    const actions = h("div", { class: "actions", id: "actions", hidden: true });
    const answerBox = h("div", { class: "actions", id: "answer-box", hidden: true });
    const outcome = h("div", { class: "outcome", id: "outcome" });
    const timeline = h("div", { class: "timeline", id: "timeline" });
    const steps = h("tbody", { id: "steps-body" });
    const logs = h("div", { class: "logs", id: "logs" });
    const children = h("div", { id: "children" });
    const live = h("span", { class: "live", id: "live" });
    const internal = h("input", { type: "checkbox", id: "show-internal", onchange: () => load() });
    const expanded = new Set(); // the step groups a person opened
    view.replaceChildren(
      h("p", {}, h("a", { href: "#/", id: "back" }, "← Runs")),
      title, facts, answerBox, actions, outcome,
      h("h2", {}, "Timeline ", live,
        h("label", { class: "toggle hint" }, internal, " show internal records")),
      timeline,
      h("h2", {}, "Steps"),
      h("table", { id: "steps" },
        h("thead", {}, h("tr", {},
          ["#", "Step", "Status", "Attempts", "Duration", "Input", "Output / error"].map((t) => h("th", {}, t)))),
        steps),
      children,
      h("h2", {}, "Logs"), logs,
    );
    let actionsBuilt = false;
    let asked = null; // the question the answer form was built for (its answer event)

    async function load() {
      let run;
      let journal;
      let logData;
      try {
        [run, journal, logData] = await Promise.all([
          api(`/api/runs/${encodeURIComponent(runId)}`),
          api(`/api/runs/${encodeURIComponent(runId)}/journal${internal.checked ? "?internal=1" : ""}`),
          api(`/api/runs/${encodeURIComponent(runId)}/logs`),
        ]);
      } catch (error) {
        if (routeKey !== key) return;
        if (error.status === 404) {
          view.replaceChildren(h("h1", {}, "No such run"), h("p", {}, error.message),
            h("p", {}, h("a", { href: "#/" }, "← Runs")));
          return;
        }
        if (!failed(error)) schedule(load, RUN_REFRESH_MS);
        return;
      }
      if (routeKey !== key) return;
      title.replaceChildren("Run ", h("span", { class: "mono", id: "run-id" }, run.run_id), pill(run.status));
      facts.replaceChildren(...renderFacts(run));
      outcome.replaceChildren(...renderOutcome(run));
      timeline.replaceChildren(...renderTimeline(run, journal.steps));
      steps.replaceChildren(...renderSteps(journal.steps, expanded, load));
      children.replaceChildren(...(journal.children && journal.children.length ? [
        h("h2", {}, "Children"),
        h("table", { class: "children" }, h("tbody", {}, renderRuns(journal.children))),
      ] : []));
      renderLogs(logs, logData.lines);
      if (!actionsBuilt && info.actions && !run.finished) {
        actionsBuilt = true;
        buildActions(actions, run.run_id, load);
      }
      const question = info.actions && run.question ? run.waiting_for : null;
      if (question !== asked) {
        asked = question;
        if (question) buildAnswer(answerBox, run, load);
        else answerBox.replaceChildren();
      }
      answerBox.hidden = !asked;
      if (run.finished) actions.replaceChildren(); // nothing left to act on
      actions.hidden = run.finished || !info.actions;
      live.className = run.finished ? "live" : "live on";
      live.textContent = run.finished ? "" : "live";
      if (!run.finished) schedule(load, RUN_REFRESH_MS);
    }
    load();
  }

  function renderFacts(run) {
    const fact = (k, v, cls) => h("div", { class: "fact" }, h("span", { class: "k" }, k), h("span", { class: cls || "" }, v));
    return [
      fact("workflow", run.workflow),
      fact("version", run.version, "mono"),
      fact("started", fmtTime(run.created_at), "mono"),
      fact(run.finished ? "duration" : "running for",
        fmtDuration(run.finished ? run.duration : Date.now() / 1000 - run.created_at)),
      fact("attempt", run.attempt),
      run.session_id ? fact("session", run.session_id, "mono") : null,
      run.user_id ? fact("user", run.user_id, "mono") : null,
      !run.finished && run.status_text && run.status_text !== run.status
        ? h("div", { class: "fact wide" }, h("span", { class: "k" }, "status"), h("span", { id: "status-text" }, run.status_text))
        : null,
      run.question ? h("div", { class: "fact", id: "question" }, h("span", { class: "k" }, "question"),
        h("span", {}, run.question.question),
        run.question.options.length ? h("span", { class: "hint" },
          ` (${run.question.input_type}: ${run.question.options.map((o) => o.id).join(", ")})`) : null)
        : null,
      run.progress ? renderProgress(run.progress) : null,
      run.parent_id ? h("div", { class: "fact" }, h("span", { class: "k" }, "parent"),
        h("a", { class: "mono", id: "parent", href: `#/runs/${run.parent_id}` }, run.parent_id)) : null,
    ].filter(Boolean);
  }

  // ctx.progress: a bar when the report has a total, the count otherwise, and its message.
  function renderProgress(report) {
    const bar = report.total ? h("progress", { max: String(report.total), value: String(report.n) }) : null;
    const count = report.total ? `${report.n} / ${report.total}` : String(report.n);
    return h("div", { class: "fact", id: "progress" }, h("span", { class: "k" }, "progress"),
      bar, h("span", { class: "mono" }, ` ${count}`), report.message ? h("div", { class: "hint" }, report.message) : null);
  }

  function renderOutcome(run) {
    const input = h("div", { class: "io" }, h("h2", {}, "Input"),
      h("pre", { class: "value", id: "input" }, run.workflow + call(run.args, run.kwargs)));
    if (run.error) {
      return [input, h("div", { class: "io" }, h("h2", {}, "Error"),
        h("div", { class: "error-box run-error", id: "run-error" },
          h("div", { class: "what" }, `${run.error.type}: ${run.error.message}`),
          run.error.traceback ? h("details", {}, h("summary", {}, "traceback"), h("pre", {}, run.error.traceback)) : null))];
    }
    if (run.status === "completed") {
      return [input, h("div", { class: "io" }, h("h2", {}, "Result"), h("pre", { class: "value", id: "result" }, json(run.result)))];
    }
    return [input];
  }

  // Where a step's part sits in its bar, as percentages of the bar.
  function within(s, from, to) {
    const span = Math.max(s.finished_at - s.started_at, 0.001);
    const left = Math.min(Math.max(((from - s.started_at) / span) * 100, 0), 100);
    const right = Math.min(Math.max(((to - s.started_at) / span) * 100, 0), 100);
    return { left: `${left}%`, width: `${Math.max(right - left, 0)}%` };
  }

  // A retried step's bar: each attempt its own segment, each backoff a dashed gap.
  function attemptSegments(s) {
    const parts = [];
    for (const a of s.attempts) {
      const tip = `attempt ${a.attempt}: ${a.status}${a.error ? ` (${a.error})` : ""}` +
        (a.next_at ? `, next at ${fmtTime(a.next_at)}` : "");
      parts.push(h("div", {
        class: `tl-attempt ${a.status}`, "data-attempt": a.attempt, title: tip,
        style: within(s, a.started_at, a.finished_at),
      }));
      if (a.next_at) {
        parts.push(h("div", {
          class: "tl-gap", title: `backoff until ${fmtTime(a.next_at)}`,
          style: within(s, a.finished_at, a.next_at),
        }));
      }
    }
    return parts;
  }

  function barClass(s) {
    if (s.status === "failed") return "failed";
    if (s.status === "retrying") return "retrying";
    if (s.status === "waiting") return `other kind-${s.kind} waiting`;
    if (s.kind === "step") return "completed";
    return `other kind-${s.kind}`;
  }

  function renderTimeline(run, allSteps) {
    const steps = allSteps.filter((s) => s.finished_at > 0); // recorded values take no time
    const now = Date.now() / 1000;
    const t0 = run.created_at;
    const ends = steps.map((s) => s.finished_at);
    const t1 = run.finished ? Math.max(run.updated_at, ...ends) : Math.max(now, ...ends);
    const span = Math.max(t1 - t0, 0.001);
    const pct = (t) => Math.min(Math.max(((t - t0) / span) * 100, 0), 100);
    const axis = h("div", { class: "tl-axis" },
      [0, 0.25, 0.5, 0.75, 1].map((f) => h("span", { class: "tl-tick", style: { left: `${f * 100}%` } }, fmtDuration(span * f))));
    const rows = steps.length > GROUP_AT ? groupedTimeline(steps, pct) : steps.map((s) => {
      const left = pct(s.started_at);
      const width = Math.max(pct(s.finished_at) - left, 0);
      const split = s.attempts && s.attempts.length > 0;
      const retried = s.attempt > 1 || s.status === "retrying";
      const tries = s.status === "retrying" ? `, attempt ${s.attempt} of ${s.of} next at ${fmtTime(s.wake_at)}`
        : s.attempt ? `, ${s.attempt} attempt${s.attempt === 1 ? "" : "s"}` : "";
      const until = s.wake_at && s.status !== "retrying" ? ` until ${fmtTime(s.wake_at)}` : "";
      const tip = `${s.seq} ${s.name}: ${s.status}${until}${tries}, ${fmtDuration(s.duration)}`;
      const bar = h("div", {
        class: `tl-bar ${barClass(s)}${retried ? " retried" : ""}${split ? " split" : ""}`,
        "data-seq": s.seq,
        title: tip,
        style: { left: `${left}%`, width: `${width}%` },
      }, split ? attemptSegments(s) : []);
      const noteText = s.status === "retrying"
        ? `attempt ${s.attempt} of ${s.of} at ${fmtTime(s.wake_at).slice(11)}`
        : `${fmtDuration(s.duration)}${retried ? ` · ${s.attempt} attempts` : ""}`;
      const end = left + width;
      // Beside the bar where there is room; over its start when it spans the track.
      const inside = end > 70 && left < 30;
      const note = h("span", {
        class: `tl-note${retried ? " retry" : ""}${inside ? " inside" : ""}`,
        style: inside ? { left: `${left}%`, marginLeft: "8px" }
          : end > 70 ? { right: `${100 - left}%`, paddingRight: "6px" } : { left: `${end}%` },
      }, noteText);
      const name = s.child ? h("a", { href: `#/runs/${s.child}` }, s.name) : s.name;
      return h("div", { class: `tl-row step${s.internal ? " internal" : ""}` },
        h("div", { class: "tl-label", title: tip }, h("span", { class: "seq" }, s.seq), name),
        h("div", { class: "tl-track" }, bar, note));
    });
    if (!run.finished) {
      const from = pct(Math.max(t0, ...ends.filter((e) => e <= now)));
      rows.push(h("div", { class: "tl-row" },
        h("div", { class: "tl-label hint", title: run.status_text || run.status }, run.status === "running" ? "running…" : `${run.status_text || run.status}…`),
        h("div", { class: "tl-track" }, h("div", { class: "tl-pending", style: { left: `${from}%`, width: `${Math.max(pct(now) - from, 0)}%` } }))));
    }
    if (!steps.length && run.finished) rows.push(h("div", { class: "tl-empty" }, "No steps recorded."));
    return [axis, ...rows];
  }

  // Steps grouped by name, in order of first use: one row a name, a tick per step.
  function groups(steps) {
    const byName = new Map();
    for (const s of steps) {
      if (!byName.has(s.name)) byName.set(s.name, []);
      byName.get(s.name).push(s);
    }
    return [...byName.entries()];
  }

  function countsText(members) {
    const counts = {};
    for (const s of members) counts[s.status] = (counts[s.status] || 0) + 1;
    return Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", ");
  }

  function groupedTimeline(steps, pct) {
    return groups(steps).map(([name, members]) => {
      const first = members[0].started_at;
      const last = Math.max(...members.map((s) => s.finished_at));
      const tip = `${name}: ${members.length} steps (${countsText(members)})`;
      return h("div", { class: "tl-row group", "data-name": name },
        h("div", { class: "tl-label", title: tip }, name, h("span", { class: "count" }, ` ×${members.length}`)),
        h("div", { class: "tl-track" },
          h("div", { class: "tl-span", style: { left: `${pct(first)}%`, width: `${Math.max(pct(last) - pct(first), 0)}%` } }),
          members.filter((s) => s.status !== "completed").map((s) => h("div", {
            class: `tl-tick-mark ${barClass(s)}`, title: `${s.seq} ${s.name}: ${s.status}`,
            style: { left: `${pct(s.started_at)}%` },
          })),
          members.every((s) => s.status === "completed") ? null : h("span", {
            class: `tl-note${pct(last) > 70 && pct(first) < 30 ? " inside" : ""}`,
            style: pct(last) <= 70 ? { left: `${pct(last)}%` }
              : pct(first) < 30 ? { left: `${pct(first)}%`, marginLeft: "8px" }
                : { right: `${100 - pct(first)}%`, paddingRight: "6px" },
          }, countsText(members))));
    });
  }

  function stepRow(s) {
    const retriedErrors = (s.attempts || []).filter((a) => a.error);
    return h("tr", { class: `step-row${s.error ? " step-failed" : ""}${s.internal ? " internal" : ""}`, "data-seq": s.seq },
      h("td", { class: "num" }, s.seq),
      h("td", {}, s.child ? h("a", { href: `#/runs/${s.child}` }, s.name) : s.name,
        s.kind !== "step" && s.kind !== "step_error" ? h("span", { class: "kind" }, s.kind) : null),
      h("td", {}, pill(s.status)),
      h("td", { class: "num" }, s.status === "retrying" ? `${s.attempt} of ${s.of}` : s.attempt || "–"),
      h("td", { class: "num" }, fmtDuration(s.duration)),
      h("td", {}, s.status === "retrying" ? h("span", { class: "hint" }, "not recorded yet")
        : h("pre", { class: "value" }, stepInput(s.input))),
      h("td", {}, s.error
        ? h("div", { class: "error-box step-error" },
          h("div", { class: "what" }, s.status === "retrying"
            ? `next attempt at ${fmtTime(s.wake_at)}; last error: ${s.error.type}: ${s.error.message}`
            : `${s.error.type}: ${s.error.message}`),
          s.error.traceback ? h("details", {}, h("summary", {}, "traceback"), h("pre", {}, s.error.traceback)) : null)
        : h("pre", { class: "value" }, s.wake_at ? `until ${fmtTime(s.wake_at)}`
          : s.status === "waiting" ? "not yet" : json(s.output)),
      retriedErrors.length
        ? h("details", { class: "attempts" }, h("summary", {}, `${retriedErrors.length} failed attempt${retriedErrors.length === 1 ? "" : "s"}`),
          h("ol", {}, retriedErrors.map((a) => h("li", { value: a.attempt }, `${fmtClock(a.started_at)} ${a.error}`))))
        : null),
    );
  }

  function renderSteps(steps, expanded, reload) {
    if (!steps.length) return [h("tr", {}, h("td", { class: "empty", colspan: 7 }, "No steps recorded yet"))];
    if (steps.length <= GROUP_AT) return steps.map(stepRow);
    const rows = [];
    for (const [name, members] of groups(steps)) {
      const open = expanded.has(name);
      const total = members.reduce((sum, s) => sum + (s.duration || 0), 0);
      rows.push(h("tr", { class: "step-group", "data-name": name },
        h("td", { class: "num" }, h("button", {
          class: "act small", type: "button", "aria-expanded": String(open),
          onclick: () => { if (open) expanded.delete(name); else expanded.add(name); reload(); },
        }, open ? "−" : "+")),
        h("td", {}, name, h("span", { class: "count" }, ` ×${members.length}`)),
        h("td", {}, countsText(members)),
        h("td", { class: "num" }, members.reduce((sum, s) => sum + (s.attempt || 0), 0)),
        h("td", { class: "num" }, fmtDuration(total)),
        h("td", { colspan: 2, class: "hint" }, `steps ${members[0].seq}–${members[members.length - 1].seq}`)));
      if (open) rows.push(...members.map(stepRow));
    }
    return rows;
  }

  function renderLogs(box, lines) {
    const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
    const sorted = lines.slice().sort((a, b) => a.time - b.time);
    box.replaceChildren(...(sorted.length ? sorted.map((line) => h("div", { class: `log-line ${String(line.level).toUpperCase()} from-${line.source}` },
      h("span", { class: "t" }, fmtClock(line.time)), `${String(line.level).padEnd(7)} ${line.message}`))
      : [h("div", { class: "hint" }, "No log lines")]));
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  // The answer to the question a run waits on (ctx.wait_for_user): a text, one option
  // (approval, select), several (multiselect), the person's own words where allowed, or a skip.
  function buildAnswer(box, run, reload) {
    const q = run.question;
    const many = q.input_type === "multiselect";
    const options = q.options.map((o) => h("input", { type: many ? "checkbox" : "radio", name: "answer-option", value: o.id }));
    const own = q.input_type === "text" || q.allow_custom
      ? h("input", { type: "text", id: "answer-text", placeholder: q.input_type === "text" ? "your answer" : "something else" })
      : null;
    async function send(answer) {
      try {
        await post(`/api/runs/${encodeURIComponent(run.run_id)}/answer`, { answer });
        say(answer === null ? "Skipped" : "Answered", true);
      } catch (error) {
        failed(error);
      }
      reload();
    }
    const form = h("form", {
      id: "answer",
      onsubmit: (event) => {
        event.preventDefault();
        const chosen = options.filter((o) => o.checked).map((o) => o.value);
        const words = own ? own.value.trim() : "";
        if (q.input_type === "text") send(own.value);
        else if (many) send(words ? [...chosen, words] : chosen);
        else if (words) send(words);
        else if (chosen.length) send(chosen[0]);
        else say("Choose an option");
      },
    },
    h("span", { class: "k" }, q.question),
    ...q.options.map((o, i) => h("label", { class: "choice" }, options[i], ` ${o.label}`)),
    own,
    h("button", { class: "act", type: "submit" }, "Answer"),
    q.skippable ? h("button", { class: "act", type: "button", id: "skip", onclick: () => send(null) }, "Skip") : null);
    box.replaceChildren(form);
  }

  function buildActions(box, runId, reload) {
    let armed = null;
    const cancel = h("button", {
      class: "act danger",
      id: "cancel",
      type: "button",
      onclick: async () => {
        if (!armed) {
          cancel.classList.add("armed");
          cancel.textContent = "Click again to cancel the run";
          armed = setTimeout(() => {
            armed = null;
            cancel.classList.remove("armed");
            cancel.textContent = "Cancel run";
          }, 5000);
          return;
        }
        clearTimeout(armed);
        armed = null;
        cancel.disabled = true;
        try {
          const result = await post(`/api/runs/${encodeURIComponent(runId)}/cancel`, {});
          say(result.cancelled ? "Run cancelled" : `The run had already finished (${result.run.status})`, true);
        } catch (error) {
          failed(error);
        }
        cancel.disabled = false;
        cancel.classList.remove("armed");
        cancel.textContent = "Cancel run";
        reload();
      },
    }, "Cancel run");
    const name = h("input", { type: "text", id: "event-name", placeholder: "event name", required: true });
    const payload = h("textarea", { id: "event-payload", placeholder: "payload (JSON), e.g. {\"approved\": true}", rows: 2 });
    const form = h("form", {
      id: "send-event",
      onsubmit: async (event) => {
        event.preventDefault();
        let value = null;
        if (payload.value.trim()) {
          try {
            value = JSON.parse(payload.value);
          } catch (error) {
            say(`The payload is not valid JSON: ${error.message}`);
            return;
          }
        }
        try {
          await post(`/api/runs/${encodeURIComponent(runId)}/events`, { name: name.value.trim(), payload: value });
          say(`Sent ${name.value.trim()}`, true);
        } catch (error) {
          failed(error);
        }
        reload();
      },
    }, name, h("div", { style: { minWidth: "320px" } }, payload), h("button", { class: "act", type: "submit" }, "Send event"));
    box.replaceChildren(cancel, form);
  }

  // -- start

  async function start() {
    try {
      info = await api("/api/info");
      if (Array.isArray(info.statuses) && info.statuses.length) STATUSES = info.statuses;
      document.getElementById("store").textContent = info.store;
      document.getElementById("version").textContent = `surestep ${info.version} · journal format ${info.format}`;
      const mode = document.getElementById("mode");
      mode.hidden = info.actions;
      mode.textContent = "read-only";
    } catch (error) {
      if (failed(error)) {
        window.addEventListener("hashchange", route);
        return;
      }
    }
    window.addEventListener("hashchange", route);
    route();
  }

  start();
})();

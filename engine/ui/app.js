// Tollgate admin dashboard. Talks only to this gateway's admin API (same origin, the session
// cookie); draws its charts as SVG built element by element. Every name and value from the API
// goes into the page as text (textContent, setAttribute), never as markup.
"use strict";

(() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const LIVE_EVERY_MS = 2000;
  const SLOW_EVERY_MS = 5000;

  const $ = (id) => document.getElementById(id);

  /** An element with attributes and children (strings become text nodes). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== undefined && value !== null) node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /** An SVG element with attributes. */
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      node.setAttribute(name, String(value));
    }
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  /** Replace a table's body rows. */
  function fillTable(id, rows, empty) {
    const body = $(id).tBodies[0];
    clear(body);
    if (rows.length === 0) {
      const cols = $(id).tHead.rows[0].cells.length;
      body.append(el("tr", { class: "empty" }, el("td", { colspan: cols }, empty)));
      return;
    }
    for (const row of rows) body.append(row);
  }

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  /** Call the admin API; a lost session goes back to the login page. */
  async function api(path, options = {}) {
    const method = options.method || "GET";
    const headers = { accept: "application/json" };
    if (method !== "GET") headers["x-tollgate-csrf"] = "1";
    const init = { method, headers, credentials: "same-origin", cache: "no-store" };
    if (options.body !== undefined) {
      headers["content-type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    const response = await fetch(path, init);
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (response.status === 401) {
      window.location.assign("/ui/login");
      throw new ApiError(401, "signed out");
    }
    if (!response.ok) {
      const message = data && data.error && data.error.message ? data.error.message : `HTTP ${response.status}`;
      throw new ApiError(response.status, message);
    }
    return data;
  }

  // === formatting ===

  const usd = (text) => (text === null || text === undefined ? "–" : `$${text}`);
  const int = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
  function msText(value) {
    if (value === null || value === undefined) return "–";
    if (value >= 1000) return `${(value / 1000).toFixed(2)} s`;
    if (value >= 10) return `${value.toFixed(0)} ms`;
    return `${value.toFixed(1)} ms`;
  }
  const time = (ms) => new Date(ms).toLocaleTimeString();
  const dateTime = (ms) => new Date(ms).toLocaleString();
  function day(offset) {
    const d = new Date();
    d.setUTCDate(d.getUTCDate() - offset);
    return d.toISOString().slice(0, 10);
  }
  function nanosToUsd(nanos) {
    return Number(nanos) / 1e9;
  }
  /** Nanodollars as the API writes dollars: exact, no trailing zeros. */
  function nanosText(nanos) {
    const n = Math.max(0, Math.round(Number(nanos)));
    const whole = Math.floor(n / 1e9);
    const frac = n % 1e9;
    if (frac === 0) return `$${whole}`;
    return `$${whole}.${String(frac).padStart(9, "0").replace(/0+$/, "")}`;
  }
  /** A dollar amount for a chart axis: two significant digits. */
  function axisUsd(v) {
    if (v === 0) return "$0";
    return v >= 1 ? `$${v.toFixed(2)}` : `$${Number(v.toPrecision(2))}`;
  }

  function setStatus(text, bad) {
    const node = $("status");
    node.textContent = text;
    node.classList.toggle("bad", Boolean(bad));
  }

  // === charts ===

  /** Vertical bars, one per value, with an optional second stacked series (errors). */
  function barChart(node, values, options) {
    clear(node);
    const [, , width, height] = node.getAttribute("viewBox").split(" ").map(Number);
    const top = 12;
    const bottom = 16;
    const left = 72;
    const plotH = height - top - bottom;
    const plotW = width - left - 4;
    const max = Math.max(options.minMax || 0, ...values.map((v) => v.value));
    node.append(svg("line", { class: "axis", x1: left, y1: top + plotH, x2: width, y2: top + plotH }));
    node.append(svg("text", { class: "tick", x: left - 6, y: top + 4, "text-anchor": "end" }, options.format(max)));
    node.append(svg("text", { class: "tick", x: left - 6, y: top + plotH, "text-anchor": "end" }, options.format(0)));
    if (values.length === 0) return;
    const step = plotW / values.length;
    const barW = Math.max(1, step * 0.8);
    values.forEach((v, i) => {
      const x = left + i * step + (step - barW) / 2;
      const h = max > 0 ? (v.value / max) * plotH : 0;
      const bar = svg("rect", { class: "bar", x, y: top + plotH - h, width: barW, height: h });
      bar.append(svg("title", {}, v.title));
      node.append(bar);
      if (v.errors) {
        const eh = max > 0 ? (v.errors / max) * plotH : 0;
        node.append(svg("rect", { class: "bar error", x, y: top + plotH - eh, width: barW, height: eh }));
      }
    });
    const first = values[0].label;
    const last = values[values.length - 1].label;
    node.append(svg("text", { class: "tick", x: left, y: height - 4 }, first));
    node.append(svg("text", { class: "tick", x: width - 4, y: height - 4, "text-anchor": "end" }, last));
  }

  /** Horizontal bars, one labelled row per entry, largest first. */
  function rankChart(node, entries) {
    clear(node);
    const rowH = 22;
    const width = 360;
    const labelW = 120;
    const height = Math.max(1, entries.length) * rowH + 4;
    node.setAttribute("viewBox", `0 0 ${width} ${height}`);
    if (entries.length === 0) {
      node.append(svg("text", { class: "tick", x: 4, y: 16 }, "no spend in this period"));
      return;
    }
    const max = Math.max(...entries.map((e) => e.value));
    entries.forEach((e, i) => {
      const y = i * rowH + 2;
      node.append(svg("text", { class: "name", x: labelW - 6, y: y + 15, "text-anchor": "end" }, e.name));
      const w = max > 0 ? (e.value / max) * (width - labelW - 80) : 0;
      const bar = svg("rect", { class: "bar", x: labelW, y: y + 3, width: Math.max(w, 1), height: rowH - 8 });
      bar.append(svg("title", {}, `${e.name}: ${e.text}`));
      node.append(bar);
      node.append(svg("text", { class: "tick", x: labelW + w + 4, y: y + 15 }, e.text));
    });
  }

  // === live: stats, guardrail hits, deployments ===

  function renderStats(stats) {
    $("rps").textContent = stats.requests_per_second.toFixed(1);
    const latency = stats.latency;
    $("latency-p50").textContent = latency ? msText(latency.p50_ms) : "–";
    $("latency-p90").textContent = latency ? msText(latency.p90_ms) : "–";
    $("latency-p99").textContent = latency ? msText(latency.p99_ms) : "–";
    const ttft = stats.time_to_first_token;
    $("ttft").textContent = ttft ? `${msText(ttft.p50_ms)} / ${msText(ttft.p90_ms)} / ${msText(ttft.p99_ms)}` : "–";
    $("open-connections").textContent = int(stats.open_connections);
    const since = Math.round((stats.time_ms - stats.latency_since_ms) / 1000);
    $("live-window").textContent = `requests per second over the last minute; latency over the last ${since} s`;
    const notes = [];
    if (!stats.counting) notes.push("server.metrics = false: live figures and guardrail hits are not counted.");
    if (stats.stale_workers > 0) notes.push(`${stats.stale_workers} of ${stats.workers} cores did not answer in time; their last copy is shown.`);
    notes.push(`${stats.workers} cores (${stats.drivers.join(", ")}).`);
    $("live-note").textContent = notes.join(" ");
    barChart(
      $("rps-chart"),
      stats.per_second.map((s) => ({
        value: s.requests,
        errors: s.errors,
        label: time(s.second * 1000),
        title: `${time(s.second * 1000)}: ${s.requests} requests, ${s.errors} errors`,
      })),
      { minMax: 1, format: (v) => `${Math.round(v)}/s` },
    );
    fillTable(
      "models-table",
      stats.models.map((m) =>
        el(
          "tr",
          { "data-model": m.model },
          el("td", {}, m.model),
          el("td", { class: "num requests" }, int(m.requests)),
          el("td", { class: "num" }, int(m.errors)),
          el("td", { class: "num" }, int(m.input_tokens)),
          el("td", { class: "num" }, int(m.output_tokens)),
          el("td", { class: "num cost" }, usd(m.cost_usd)),
          el("td", { class: "num" }, m.latency ? msText(m.latency.p50_ms) : "–"),
          el("td", { class: "num" }, m.latency ? msText(m.latency.p90_ms) : "–"),
          el("td", { class: "num" }, m.latency ? msText(m.latency.p99_ms) : "–"),
        ),
      ),
      "no model requests yet",
    );
  }

  function renderHits(hits) {
    fillTable(
      "hits-table",
      hits.data.map((h) =>
        el(
          "tr",
          { "data-request-id": h.request_id },
          el("td", {}, time(h.time_ms)),
          el("td", {}, h.profile),
          el("td", { class: "rule" }, h.rule),
          el("td", { class: `action ${h.action}` }, h.action),
          el("td", {}, h.side),
          el("td", { class: "num" }, int(h.count)),
          el("td", { class: "key" }, h.key),
          el("td", { class: "mono" }, h.request_id),
        ),
      ),
      "no guardrail hits recently",
    );
  }

  function renderDeployments(list) {
    fillTable(
      "deployments-table",
      list.data.map((d) => {
        const cooling = d.cooling_until_ms
          ? `${time(d.cooling_until_ms)} (${d.cores_cooling_down} of ${list.workers} cores)`
          : "–";
        const state = d.state.replace("_", " ");
        return el(
          "tr",
          { "data-deployment": d.deployment, "data-model": d.model },
          el("td", {}, d.model),
          el("td", {}, d.deployment),
          el("td", { class: `state ${d.state}` }, state),
          el("td", { class: "until" }, cooling),
          el("td", { class: "num" }, `${d.recent_failures} of ${d.recent_requests} (${d.window_s} s)`),
          el("td", { class: "num" }, int(d.in_flight)),
          el("td", { class: "num" }, msText(d.ttfb_ms)),
          el("td", { class: "num" }, int(d.provider_failures_total)),
        );
      }),
      "no deployments",
    );
  }

  async function pollLive() {
    const [stats, hits, deployments] = await Promise.all([
      api("/admin/stats"),
      api("/admin/guardrail-hits?limit=50"),
      api("/admin/deployments"),
    ]);
    renderStats(stats);
    renderHits(hits);
    renderDeployments(deployments);
  }

  // === slow: spend, keys, teams, budgets ===

  function spendQuery(scope, days, extra) {
    return `/admin/spend?scope=${scope}&from=${day(days - 1)}&to=${day(0)}${extra || ""}`;
  }

  function spendRows(list) {
    return list.data.map((r) => ({
      name: r.name,
      day: r.day,
      requests: r.requests,
      input: r.input_tokens,
      output: r.output_tokens,
      nanos: Number(r.cost_nanos),
      text: usd(r.cost_usd),
    }));
  }

  function renderSpend(days, byDay, byModel, byTeam) {
    const daily = new Map(spendRows(byDay).map((r) => [r.day, r]));
    const total = spendRows(byDay).reduce((sum, r) => sum + r.nanos, 0);
    $("spend-total").textContent = nanosText(total);
    const values = [];
    for (let offset = days - 1; offset >= 0; offset -= 1) {
      const d = day(offset);
      const row = daily.get(d);
      values.push({
        value: row ? nanosToUsd(row.nanos) : 0,
        label: d,
        title: `${d}: ${row ? row.text : "$0"} (${row ? int(row.requests) : 0} requests)`,
      });
    }
    barChart($("spend-day-chart"), values, { minMax: 0, format: axisUsd });
    for (const [rows, chart, table, attr] of [
      [spendRows(byModel), "spend-model-chart", "spend-model-table", "data-model"],
      [spendRows(byTeam), "spend-team-chart", "spend-team-table", "data-team"],
    ]) {
      rows.sort((a, b) => b.nanos - a.nanos || a.name.localeCompare(b.name));
      rankChart($(chart), rows.map((r) => ({ name: r.name || "(none)", value: r.nanos, text: r.text })));
      fillTable(
        table,
        rows.map((r) =>
          el(
            "tr",
            { [attr]: r.name },
            el("td", {}, r.name || "(none)"),
            el("td", { class: "num requests" }, int(r.requests)),
            el("td", { class: "num" }, `${int(r.input)} / ${int(r.output)}`),
            el("td", { class: "num cost" }, r.text),
          ),
        ),
        "no spend in this period",
      );
    }
  }

  /** "remaining $x of $y/period" for every budget of a scope. */
  function budgetsText(budgets) {
    if (!budgets || budgets.length === 0) return "–";
    return budgets
      .map((b) => {
        const what = `${b.model ? `${b.model}: ` : ""}${b.soft ? "soft " : ""}`;
        if (b.remaining_usd === null) return `${what}$${b.limit_usd}/${b.period} (not in use)`;
        return `${what}$${b.remaining_usd} of $${b.limit_usd}/${b.period}`;
      })
      .join("; ");
  }

  function limitsText(limits) {
    const parts = [];
    if (limits.rpm) parts.push(`${limits.rpm} rpm`);
    if (limits.tpm) parts.push(`${limits.tpm} tpm`);
    if (limits.max_parallel) parts.push(`${limits.max_parallel} parallel`);
    return parts.length ? parts.join(", ") : "–";
  }

  function keyStatus(key) {
    const now = Date.now() / 1000;
    if (key.revoked_at) return "revoked";
    if (key.expires_at && key.expires_at <= now) return "expired";
    return "active";
  }

  function revokeButton(key) {
    const button = el("button", { type: "button", class: "revoke", "data-key": key.name }, "Revoke");
    if (key.declared) {
      button.disabled = true;
      button.title = "declared in the config file";
      return button;
    }
    let armed = null;
    button.addEventListener("click", async () => {
      if (!armed) {
        button.textContent = "Confirm revoke";
        button.classList.add("armed");
        armed = setTimeout(() => {
          armed = null;
          button.textContent = "Revoke";
          button.classList.remove("armed");
        }, 5000);
        return;
      }
      clearTimeout(armed);
      armed = null;
      button.disabled = true;
      try {
        await api(`/admin/keys/${encodeURIComponent(key.name)}/revoke`, { method: "POST" });
        await pollSlow();
      } catch (e) {
        showKeyError(e.message);
        button.disabled = false;
      }
    });
    return button;
  }

  function renderKeys(keys, budgets, spendByKey) {
    const live = new Map(budgets.data.filter((b) => b.level === "key").map((b) => [b.name, b.budgets]));
    const spend = new Map(spendRows(spendByKey).map((r) => [r.name, r.text]));
    fillTable(
      "keys-table",
      keys.data.map((k) => {
        const status = keyStatus(k);
        const owner = k.user ? `user ${k.user}` : k.team ? `team ${k.team}` : k.org ? `org ${k.org}` : "–";
        return el(
          "tr",
          { "data-key": k.name, class: status },
          el("td", { class: "name" }, k.name),
          el("td", { class: "mono" }, k.display),
          el("td", {}, owner),
          el("td", { class: `status ${status}` }, status + (k.declared ? " (config)" : "")),
          el("td", {}, limitsText(k.limits)),
          el("td", { class: "budget" }, budgetsText(live.get(k.name))),
          el("td", { class: "num spend" }, spend.get(k.name) || "$0"),
          el("td", {}, status === "revoked" ? null : revokeButton(k)),
        );
      }),
      "no keys",
    );
  }

  function renderTeams(teams, budgets, spendByTeam) {
    const live = new Map(budgets.data.filter((b) => b.level === "team").map((b) => [b.name, b.budgets]));
    const spend = new Map(spendRows(spendByTeam).map((r) => [r.name, r.text]));
    fillTable(
      "teams-table",
      teams.data.map((t) =>
        el(
          "tr",
          { "data-team": t.name },
          el("td", { class: "name" }, t.name),
          el("td", {}, t.org || "–"),
          el("td", {}, limitsText(t.limits)),
          el("td", { class: "budget" }, budgetsText(live.get(t.name))),
          el("td", { class: "num spend" }, spend.get(t.name) || "$0"),
        ),
      ),
      "no teams",
    );
    const select = $("new-key-team");
    const chosen = select.value;
    while (select.options.length > 1) select.remove(1);
    for (const t of teams.data) select.append(el("option", { value: t.name }, t.name));
    select.value = teams.data.some((t) => t.name === chosen) ? chosen : "";
  }

  async function pollSlow() {
    const days = Number($("spend-days").value);
    const [byDay, byModel, byTeam, byKey, keys, teams, budgets] = await Promise.all([
      api(spendQuery("all", days, "&per=day")),
      api(spendQuery("model", days)),
      api(spendQuery("team", days)),
      api(spendQuery("key", days)),
      api("/admin/keys"),
      api("/admin/teams"),
      api("/admin/budgets"),
    ]);
    renderSpend(days, byDay, byModel, byTeam);
    renderKeys(keys, budgets, byKey);
    renderTeams(teams, budgets, byTeam);
  }

  // === key creation ===

  function showKeyError(message) {
    const node = $("key-error");
    node.textContent = message;
    node.hidden = !message;
  }

  async function createKey(event) {
    event.preventDefault();
    showKeyError("");
    const body = {};
    const name = $("new-key-name-input").value.trim();
    const team = $("new-key-team").value;
    const budget = $("new-key-budget").value.trim();
    const rpm = $("new-key-rpm").value.trim();
    if (name) body.name = name;
    if (team) body.team = team;
    const limits = {};
    if (budget) limits.budget = budget;
    if (rpm) limits.rpm = Number(rpm);
    if (Object.keys(limits).length) body.limits = limits;
    const button = $("create-key-button");
    button.disabled = true;
    try {
      const created = await api("/admin/keys", { method: "POST", body });
      $("new-key-name").textContent = created.name;
      $("new-key-secret").textContent = created.key;
      $("new-key").hidden = false;
      $("create-key").reset();
      await pollSlow();
    } catch (e) {
      showKeyError(e.message);
    } finally {
      button.disabled = false;
    }
  }

  // === loops ===

  function loop(poll, every) {
    const run = async () => {
      try {
        await poll();
        setStatus(`live · updated ${time(Date.now())}`, false);
      } catch (e) {
        if (e.status !== 401) setStatus(`error: ${e.message}`, true);
      }
      setTimeout(run, every);
    };
    run();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("create-key").addEventListener("submit", createKey);
    $("new-key-dismiss").addEventListener("click", () => {
      $("new-key-secret").textContent = "";
      $("new-key").hidden = true;
    });
    $("spend-days").addEventListener("change", () => pollSlow().catch((e) => setStatus(`error: ${e.message}`, true)));
    $("logout").addEventListener("click", async () => {
      try {
        await api("/ui/logout", { method: "POST" });
      } finally {
        window.location.assign("/ui/login");
      }
    });
    loop(pollLive, LIVE_EVERY_MS);
    loop(pollSlow, SLOW_EVERY_MS);
  });
})();

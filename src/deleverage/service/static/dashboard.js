/* deleverage risk monitor: live panels from /v1/stream (channels monitor, alert), resumed after reconnects.
   Authentication is the dashboard's session cookie (HttpOnly): this script never sees the API key. */
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const KEEP = 3600; // samples kept for the charts (the server keeps [monitor] history)
  const S = {
    latest: null, // the latest monitor message (full snapshot)
    series: [], // per sample: {t, seq, sample, bySymbol: {sym: {...chart values}}, funds}
    lastSeq: null, lastSample: -1,
    alerts: new Map(), // id -> row
    status: null, symbol: null, ws: null, retries: 0, dirty: false, lastHeat: 0,
  };

  // --- text helpers ---------------------------------------------------------------------------------------
  function set(id, text, value) {
    const el = $(id);
    if (!el) return;
    if (el.textContent !== text) el.textContent = text;
    const v = value === undefined || value === null ? "" : String(value);
    if (el.dataset.value !== v) el.dataset.value = v;
  }
  function cls(id, name) { const el = $(id); if (el) el.className = name; }
  const money = (x, unit) => (x === null || x === undefined ? "—" : Charts.compact(x) + " " + unit);
  function units(risk) {
    const settle = risk.settle;
    const linear = risk.contract === "linear";
    const base = linear && risk.symbol.endsWith(settle) ? risk.symbol.slice(0, -settle.length) : "contracts";
    return { settle, price: linear ? settle : "USD", qty: base };
  }
  function row(cells, className) {
    const tr = document.createElement("tr");
    if (className) tr.className = className;
    for (const c of cells) {
      const td = document.createElement("td");
      if (typeof c === "object" && c !== null) {
        td.textContent = c.text;
        if (c.value !== undefined && c.value !== null) td.dataset.value = String(c.value);
        if (c.cls) td.className = c.cls;
        if (c.id) td.id = c.id;
      } else td.textContent = c;
      tr.appendChild(td);
    }
    return tr;
  }
  function fill(tableId, rows) {
    const body = $(tableId).tBodies[0];
    body.replaceChildren(...rows);
  }

  // --- samples --------------------------------------------------------------------------------------------
  function compactMap(map) {
    if (!map) return null;
    return { bin_ticks: map.bin_ticks, tick_size: map.tick_size, mark_ticks: map.mark_ticks,
      below: { price: map.below.price, notional: map.below.notional, cumulative_notional: map.below.cumulative_notional },
      above: { price: map.above.price, notional: map.above.notional, cumulative_notional: map.above.cumulative_notional } };
  }
  function onSample(message) {
    if (message.on_demand || message.sample <= S.lastSample) return;
    S.lastSample = message.sample;
    S.lastSeq = message.seq;
    S.latest = message;
    const snap = message.snapshot;
    const bySymbol = {};
    for (const [sym, risk] of Object.entries(snap.symbols)) {
      const ratio = {};
      for (const [w, liq] of Object.entries(risk.liquidations)) ratio[w] = liq.ratio;
      bySymbol[sym] = { oi: risk.open_interest.notional, mark: risk.mark, ratio, settle: risk.settle,
        map: compactMap(risk.liquidation_map) };
    }
    const funds = {};
    for (const [asset, f] of Object.entries(snap.insurance_fund)) funds[asset] = f.balance;
    S.series.push({ t: snap.ts_ns, seq: message.seq, sample: message.sample, bySymbol, funds });
    if (S.series.length > KEEP) S.series.splice(0, S.series.length - KEEP);
    if (!S.symbol || !snap.symbols[S.symbol]) chooseSymbols(Object.keys(snap.symbols));
    schedule();
  }
  function chooseSymbols(names) {
    const select = $("symbol");
    const have = [...select.options].map((o) => o.value);
    if (names.join() !== have.join()) {
      select.replaceChildren(...names.map((n) => { const o = document.createElement("option"); o.value = n; o.textContent = n; return o; }));
    }
    if (!S.symbol || !names.includes(S.symbol)) S.symbol = names[0];
    select.value = S.symbol;
  }
  function onAlert(rowData) {
    S.alerts.set(rowData.id, rowData);
    if (S.alerts.size > 1000) {
      const oldest = [...S.alerts.keys()].sort((a, b) => a - b).slice(0, S.alerts.size - 1000);
      oldest.forEach((k) => S.alerts.delete(k));
    }
    schedule();
  }

  function schedule() {
    if (S.dirty) return;
    S.dirty = true;
    requestAnimationFrame(() => { S.dirty = false; render(); });
  }

  // --- rendering ------------------------------------------------------------------------------------------
  function render() {
    renderAlerts();
    const m = S.latest;
    if (!m) return;
    const snap = m.snapshot;
    const risk = snap.symbols[S.symbol];
    if (!risk) return;
    const u = units(risk);
    set("mark-value", risk.mark === null ? "—" : Charts.num(risk.mark, 1) + " " + u.price, risk.mark);
    set("sample-time", Charts.utcFull(snap.ts_ns), snap.ts_ns);
    set("sample-no", String(m.sample), m.sample);
    set("sample-seq", String(m.seq), m.seq);
    set("policy", snap.policy || "—");
    renderOpenInterest(risk, u);
    renderRatios(snap, risk, u);
    renderFund(snap, risk, u);
    renderRisk(risk, u);
    renderGuards(risk, u);
    const map = risk.liquidation_map;
    set("map-legend", map ? `bars: ${u.settle} first liquidatable per ${Charts.num(map.bin_ticks * map.tick_size, 1)} ` +
      `${u.price} bin (left axis), longs below the mark in red, shorts above in green; lines: cumulative ` +
      `${u.settle} from the mark (right axis); x: price, ${u.price}` : "no map yet");
    Charts.liqMap($("map-chart"), map, { unit: u.settle, priceUnit: u.price });
    const now = performance.now();
    if (now - S.lastHeat > 250) { // the heatmap is the costly one: at most four times a second
      S.lastHeat = now;
      const cols = S.series.filter((s) => s.bySymbol[S.symbol]).map((s) => ({ t: s.t, mark: s.bySymbol[S.symbol].mark,
        map: s.bySymbol[S.symbol].map, bars: null }));
      Charts.heatmap($("heat-chart"), cols, { unit: u.settle, priceUnit: u.price });
    } else schedule();
  }

  function renderOpenInterest(risk, u) {
    const oi = risk.open_interest;
    set("oi-value", money(oi.notional, u.settle), oi.notional);
    const bigger = oi.long.lots >= oi.short.lots ? oi.long : oi.short;
    set("oi-qty", Charts.num(bigger.qty, 3) + " " + u.qty, bigger.qty);
    set("oi-long", Charts.compact(oi.long.notional) + ` (${oi.long.accounts} accts)`, oi.long.notional);
    set("oi-short", Charts.compact(oi.short.notional) + ` (${oi.short.accounts} accts)`, oi.short.notional);
    set("oi-side-note", "the larger side, screened accounts");
    const windows = S.latest.snapshot.windows;
    fill("oi-change", windows.map((w) => {
      const c = risk.open_interest_change[w];
      return row([w, { text: Charts.num(c.lots, 0) + " lots", value: c.lots },
        { text: Charts.pct(c.fraction), value: c.fraction, id: `oi-change-${w}` },
        { text: money(c.notional, u.settle), value: c.notional }]);
    }));
    Charts.spark($("oi-chart"), S.series.map((s) => ({ t: s.t, v: s.bySymbol[S.symbol]?.oi })),
      { format: (v) => Charts.compact(v) + " " + u.settle, label: "open interest, " + u.settle });
  }

  function renderRatios(snap, risk, u) {
    fill("liq-ratio", snap.windows.map((w) => {
      const l = risk.liquidations[w];
      return row([w, { text: Charts.pct(l.ratio, 3), value: l.ratio, id: `liq-ratio-${w}` },
        { text: money(l.notional, u.settle), value: l.notional, id: `liq-notional-${w}` },
        { text: String(l.count), value: l.count },
        { text: money(l.adl_notional, u.settle), value: l.adl_notional }]);
    }));
    const w = snap.windows.includes("5m") ? "5m" : snap.windows[0];
    Charts.spark($("ratio-chart"), S.series.map((s) => ({ t: s.t, v: s.bySymbol[S.symbol]?.ratio[w] })),
      { format: (v) => Charts.pct(v, 2), label: `liquidation ratio over ${w}`, color: Charts.C.long, zero: true });
  }

  function scaleOf(asset) { // minor units per unit of a settlement asset (from /v1/monitor)
    const a = S.status && S.status.assets ? S.status.assets[asset] : null;
    return a ? a.minor_per_unit : null;
  }
  function minor(x, asset) {
    const scale = scaleOf(asset);
    return scale ? Charts.num(x / scale, 2) + " " + asset : Charts.num(x, 0) + " minor " + asset;
  }

  function renderFund(snap, risk, u) {
    const f = snap.insurance_fund[risk.settle];
    if (f) {
      set("fund-balance", Charts.num(f.balance, 2) + " " + risk.settle, f.balance);
      set("fund-peak", minor(f.peak_minor, risk.settle), f.peak_minor);
      set("fund-drawdown", Charts.pct(f.drawdown, 3), f.drawdown);
      set("fund-drawdown-amount", minor(f.drawdown_minor, risk.settle), f.drawdown_minor);
      const e = snap.engine;
      set("bad-debt", minor(e.bad_debt_minor, risk.settle), e.bad_debt_minor);
      set("fund-drawn", minor(e.fund_drawn_minor, risk.settle), e.fund_drawn_minor);
      set("liquidations", String(e.liquidations), e.liquidations);
      set("adl-qty", Charts.num(e.adl_lots, 0) + " lots", e.adl_lots);
    }
    Charts.spark($("fund-chart"), S.series.map((s) => ({ t: s.t, v: s.funds[risk.settle] })),
      { format: (v) => Charts.compact(v) + " " + risk.settle, label: "insurance fund, " + risk.settle, color: Charts.C.mark });
  }

  function renderRisk(risk, u) {
    const bands = S.latest.snapshot.bands;
    if (!risk.at_risk) { fill("at-risk", [row(["no mark yet", "—", "—", "—", "—"])]); set("liq-now", "—"); return; }
    fill("at-risk", bands.map((b) => {
      const r = risk.at_risk[b];
      return row([b, { text: `${r.accounts} accts`, value: r.accounts, id: `risk-accounts-${b}` },
        { text: money(r.notional, u.settle), value: r.notional, id: `risk-notional-${b}` },
        { text: money(r.long.notional, u.settle), value: r.long.notional, cls: "long" },
        { text: money(r.short.notional, u.settle), value: r.short.notional, cls: "short" }]);
    }));
    const now = risk.liquidatable_now;
    const n = now.long.notional + now.short.notional;
    set("liq-now", `${now.long.accounts + now.short.accounts} accts, ${money(n, u.settle)}`, n);
  }

  function renderGuards(risk, u) {
    const q = risk.adl_queue;
    if (q) {
      set("adl-ranking", "ranked by " + q.ranking);
      fill("adl", ["long", "short"].map((side) => {
        const s = q[side];
        return row([{ text: side + " side", cls: side },
          { text: `${s.accounts} accts`, value: s.accounts, id: `adl-accounts-${side}` },
          { text: Charts.num(s.lots, 0) + " lots", value: s.lots },
          { text: money(s.notional, u.settle), value: s.notional, id: `adl-notional-${side}` },
          { text: money(s.unrealized_pnl, u.settle), value: s.unrealized_pnl }]);
      }));
    } else fill("adl", [row(["no mark yet", "—", "—", "—", "—"])]);
    const g = risk.safeguards;
    set("exec-state", g.execution_allowed ? "execution allowed" : "execution HALTED", g.execution_allowed ? 1 : 0);
    cls("exec-state", "badge " + (g.execution_allowed ? "good" : "bad"));
    set("band-state", g.price_band_halted ? "price band: HALTED" : "price band: ok", g.price_band_halted ? 1 : 0);
    cls("band-state", "badge " + (g.price_band_halted ? "bad" : "good"));
    set("fund-halt", g.fund_halted ? "fund halt: ON" : "fund halt: off", g.fund_halted ? 1 : 0);
    cls("fund-halt", "badge " + (g.fund_halted ? "bad" : "good"));
    if (g.oracle_ticks === null) {
      set("oracle-state", "oracle: no print yet", "");
      cls("oracle-state", "badge");
    } else {
      const oracle = Charts.num(g.oracle_ticks * (risk.liquidation_map?.tick_size || 0), 1) + " " + u.price;
      set("oracle-state", g.oracle_valid ? `oracle valid: ${oracle}` : `oracle INVALID: ${g.oracle_invalid_reason}`,
        g.oracle_valid ? 1 : 0);
      cls("oracle-state", "badge " + (g.oracle_valid ? "good" : "bad"));
    }
    const parts = [];
    if (g.range_bps !== null && g.range_bps !== undefined) parts.push(`price range ${Charts.num(g.range_bps, 1)} bps of band ${Charts.num(g.band_bps, 1)} bps`);
    if (g.halted_since_ns) parts.push(`halted since ${Charts.utcFull(g.halted_since_ns)}`);
    set("guard-detail", parts.join(" · ") || "no circuit breaker configured or no price range yet");
  }

  function renderAlerts() {
    const rows = [...S.alerts.values()].sort((a, b) => b.id - a.id).slice(0, 200);
    const counts = {};
    for (const r of S.alerts.values()) counts[r.kind] = (counts[r.kind] || 0) + 1;
    set("alert-counts", `fired ${counts.alert_fired || 0} · cleared ${counts.alert_cleared || 0} · undelivered ` +
      `${counts.alert_undelivered || 0}`, counts.alert_fired || 0);
    fill("alert-log", rows.map((r) => {
      const p = r.payload || {};
      const undelivered = r.kind === "alert_undelivered";
      const series = undelivered ? r.sink || "" : Object.values(p.labels || {}).join(" ");
      const what = document.createElement("td");
      what.className = "what";
      what.dataset.value = r.kind;
      what.append(undelivered ? `undelivered ${(r.event || "").replace("alert_", "")} ${r.rule}` :
        `${r.kind.replace("alert_", "")} ${r.rule}`);
      if (series) { const s = document.createElement("span"); s.className = "series"; s.textContent = series; what.append(s); }
      const delivery = undelivered ? `${p.attempts} tries, ${p.error || "HTTP " + p.status}` :
        `${r.delivery || ""}${r.attempts > 1 ? ", " + r.attempts + " tries" : ""}`;
      const tr = row([{ text: Charts.utcTime(r.ts_ns), value: r.ts_ns }, "",
        { text: undelivered ? "—" : fmtAlert(p, p.value), value: p.value },
        undelivered ? "—" : condition(r.kind, p), { text: delivery, value: r.delivery || "" }],
        `${r.kind} ${r.severity || ""} alert-row`);
      tr.replaceChild(what, tr.children[1]);
      tr.dataset.alertId = r.alert_id;
      return tr;
    }));
  }

  // fired: the rule's comparison held; cleared: the same comparison against the clear threshold did not
  const NOT = { ">": "≤", ">=": "<", "<": "≥", "<=": ">" };
  function condition(kind, p) {
    const cleared = kind === "alert_cleared";
    const limit = cleared && p.clear_threshold !== null && p.clear_threshold !== undefined ? p.clear_threshold : p.threshold;
    const over = p.change_over ? ` over ${p.change_over}` : "";
    return `${cleared ? NOT[p.op] || "not " + p.op : p.op} ${fmtAlert(p, limit)}${over}`;
  }
  function fmtAlert(p, v) {
    if (p.change_over && p.change === "relative") return Charts.pct(v, 2);
    return fmtMetric(p.metric, v);
  }

  function fmtMetric(metric, v) {
    if (v === null || v === undefined) return "—";
    if (/ratio|fraction|drawdown|change/.test(metric || "")) return Charts.pct(v, 3);
    if (/accounts|valid|halted|lots/.test(metric || "")) return Charts.num(v, 0);
    const unit = S.latest ? Object.values(S.latest.snapshot.symbols)[0]?.settle || "" : "";
    return Charts.compact(v) + " " + unit;
  }

  // --- the stream -----------------------------------------------------------------------------------------
  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const since = S.lastSeq === null ? 0 : S.lastSeq;
    const ws = new WebSocket(`${proto}//${location.host}/v1/stream?channels=monitor,alert&since=${since}`);
    S.ws = ws;
    ws.onopen = () => { S.retries = 0; set("conn", "live"); cls("conn", "good"); };
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.channel === "monitor") onSample(message);
      else if (message.channel === "alert") onAlert(message);
    };
    ws.onclose = () => {
      S.ws = null;
      set("conn", "reconnecting"); cls("conn", "bad");
      const delay = Math.min(10000, 500 * 2 ** S.retries++);
      setTimeout(async () => {
        const r = await fetch("/v1/monitor?latest=false", { credentials: "same-origin" }).catch(() => null);
        if (r && r.status === 401) { location.reload(); return; } // the session expired: the login form
        connect();
      }, delay);
    };
  }

  async function loadAlerts() {
    const r = await fetch("/v1/alerts?newest=true&limit=200", { credentials: "same-origin" }).catch(() => null);
    if (!r || !r.ok) return;
    const body = await r.json();
    for (const item of body.items) S.alerts.set(item.id, item);
    schedule();
  }

  async function poll() {
    const r = await fetch("/v1/monitor?latest=false", { credentials: "same-origin" }).catch(() => null);
    if (r && r.ok) {
      const body = await r.json();
      const m = body.monitor;
      S.status = m;
      if (!m.enabled) { set("monitor-state", "not configured"); cls("monitor-state", "warn"); }
      else if (m.error) { set("monitor-state", "error: " + m.error); cls("monitor-state", "bad"); }
      else if (!m.up) { set("monitor-state", "restarting"); cls("monitor-state", "warn"); }
      else {
        const lagging = m.behind > 100;
        set("monitor-state", lagging ? `catching up, ${m.behind} inputs behind` :
          `up, a sample every ${Charts.num(m.sample_every_ms / 1000, m.sample_every_ms % 1000 ? 1 : 0)} s`, m.behind);
        cls("monitor-state", lagging ? "warn" : "good");
      }
    } else if (r && r.status === 401) location.reload();
    setTimeout(poll, 3000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("symbol").addEventListener("change", (e) => { S.symbol = e.target.value; schedule(); });
    window.addEventListener("resize", () => { S.lastHeat = 0; schedule(); });
    loadAlerts();
    poll();
    connect();
  });
})();

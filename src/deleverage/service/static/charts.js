/* deleverage risk monitor: a small canvas charting kit (sparklines, the liquidation map, the heatmap).
   No dependencies. Every chart takes its canvas' CSS size and the device pixel ratio at each draw. */
"use strict";

const Charts = (() => {
  const C = {
    text: "#d6dde6", dim: "#8b949e", faint: "#6e7681", grid: "#262c35", long: "#f0565a", short: "#2fbf71",
    mark: "#ffb347", line: "#58a6ff", bg: "#0b0f15",
  };
  // viridis-like stops for the heatmap (dark purple -> teal -> yellow)
  const STOPS = [[0, [40, 11, 84]], [0.25, [59, 82, 139]], [0.5, [33, 145, 140]], [0.75, [94, 201, 98]],
                 [1, [253, 231, 37]]];

  function setup(canvas) {
    const dpr = window.devicePixelRatio || 1;
    const rect = canvas.getBoundingClientRect();
    const w = Math.max(10, Math.floor(rect.width));
    const h = Math.max(10, Math.floor(rect.height));
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = "11px system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif";
    ctx.textBaseline = "middle";
    return { ctx, w, h };
  }

  // --- numbers ----------------------------------------------------------------------------------------
  function num(x, digits) {
    if (x === null || x === undefined || !Number.isFinite(x)) return "—";
    return x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }
  function compact(x, digits = 2) {
    if (x === null || x === undefined || !Number.isFinite(x)) return "—";
    const a = Math.abs(x);
    if (a >= 1e9) return num(x / 1e9, digits) + " B";
    if (a >= 1e6) return num(x / 1e6, digits) + " M";
    if (a >= 1e4) return num(x / 1e3, digits) + " k";
    return num(x, a >= 100 ? 0 : digits);
  }
  function pct(x, digits = 2) {
    if (x === null || x === undefined || !Number.isFinite(x)) return "—";
    return num(100 * x, digits) + " %";
  }
  function utcTime(ns) {
    if (ns === null || ns === undefined) return "—";
    return new Date(ns / 1e6).toISOString().slice(11, 19);
  }
  function utcFull(ns) {
    if (ns === null || ns === undefined) return "—";
    const iso = new Date(ns / 1e6).toISOString();
    return iso.slice(0, 10) + " " + iso.slice(11, 19) + " UTC";
  }
  function niceStep(span, count) {
    const raw = span / Math.max(1, count);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
  }
  function ticks(min, max, count) {
    if (!(max > min)) return [min];
    const step = niceStep(max - min, count);
    const out = [];
    for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) out.push(v);
    return out;
  }
  function color(t) {
    const x = Math.max(0, Math.min(1, t));
    for (let i = 1; i < STOPS.length; i++) {
      if (x <= STOPS[i][0]) {
        const [a, ca] = STOPS[i - 1];
        const [b, cb] = STOPS[i];
        const u = (x - a) / (b - a);
        return `rgb(${Math.round(ca[0] + u * (cb[0] - ca[0]))},${Math.round(ca[1] + u * (cb[1] - ca[1]))},` +
          `${Math.round(ca[2] + u * (cb[2] - ca[2]))})`;
      }
    }
    return "rgb(253,231,37)";
  }

  // --- a sparkline over time: points [{t: ns, v}] ------------------------------------------------------
  function spark(canvas, points, opts = {}) {
    const { ctx, w, h } = setup(canvas);
    const fmt = opts.format || ((v) => compact(v));
    const pts = points.filter((p) => p.v !== null && p.v !== undefined && Number.isFinite(p.v));
    const right = 6, top = 6, bottom = 14;
    ctx.fillStyle = C.faint;
    if (pts.length < 2) {
      ctx.fillText(opts.empty || "waiting for samples", 8, h / 2);
      return;
    }
    let lo = Math.min(...pts.map((p) => p.v)), hi = Math.max(...pts.map((p) => p.v));
    if (opts.zero) lo = Math.min(0, lo);
    if (hi === lo) { hi += Math.abs(hi) * 0.01 || 1; lo -= Math.abs(lo) * 0.01 || 1; }
    const left = 8 + Math.max(ctx.measureText(fmt(lo)).width, ctx.measureText(fmt(hi)).width);
    const t0 = pts[0].t, t1 = pts[pts.length - 1].t;
    const X = (t) => left + (w - left - right) * (t1 > t0 ? (t - t0) / (t1 - t0) : 1);
    const Y = (v) => top + (h - top - bottom) * (1 - (v - lo) / (hi - lo));
    ctx.strokeStyle = C.grid;
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    for (const v of [lo, hi]) {
      ctx.beginPath(); ctx.moveTo(left, Y(v)); ctx.lineTo(w - right, Y(v)); ctx.stroke();
      ctx.fillStyle = C.dim; ctx.fillText(fmt(v), left - 4, Y(v));
    }
    ctx.textAlign = "left"; ctx.fillStyle = C.faint;
    ctx.fillText(utcTime(t0), left, h - 6);
    ctx.textAlign = "right";
    ctx.fillText(utcTime(t1) + " UTC", w - right, h - 6);
    ctx.strokeStyle = opts.color || C.line;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    pts.forEach((p, i) => (i ? ctx.lineTo(X(p.t), Y(p.v)) : ctx.moveTo(X(p.t), Y(p.v))));
    ctx.stroke();
    if (opts.label) {
      ctx.textAlign = "left"; ctx.fillStyle = C.faint; ctx.fillText(opts.label, left + 4, top + 6);
    }
  }

  // --- the liquidation map: bars of notional per price bin, cumulative lines ------------------------------
  function mapBars(map) {
    const bin = map.bin_ticks * map.tick_size;
    const bars = [];
    map.below.price.forEach((p, k) => bars.push({ lo: p, hi: p + bin, v: map.below.notional[k], side: "long",
      cum: map.below.cumulative_notional[k] }));
    map.above.price.forEach((p, k) => bars.push({ lo: p - bin, hi: p, v: map.above.notional[k], side: "short",
      cum: map.above.cumulative_notional[k] }));
    return bars;
  }

  function liqMap(canvas, map, opts = {}) {
    const { ctx, w, h } = setup(canvas);
    const unit = opts.unit || "";
    if (!map) {
      ctx.fillStyle = C.faint; ctx.fillText("no map yet (no mark, or the symbol is not screened)", 10, h / 2);
      return;
    }
    const bars = mapBars(map);
    const left = 56, right = 56, top = 16, bottom = 18;
    const pmin = Math.min(...bars.map((b) => b.lo)), pmax = Math.max(...bars.map((b) => b.hi));
    const vmax = Math.max(1e-9, ...bars.map((b) => b.v));
    const cmax = Math.max(1e-9, ...bars.map((b) => b.cum));
    const mark = map.mark_ticks * map.tick_size;
    const X = (p) => left + (w - left - right) * (p - pmin) / (pmax - pmin);
    const Y = (v) => top + (h - top - bottom) * (1 - v / vmax);
    const Yc = (v) => top + (h - top - bottom) * (1 - v / cmax);
    ctx.strokeStyle = C.grid; ctx.lineWidth = 1; ctx.textAlign = "right";
    for (const v of ticks(0, vmax, 3)) {
      ctx.beginPath(); ctx.moveTo(left, Y(v)); ctx.lineTo(w - right, Y(v)); ctx.stroke();
      ctx.fillStyle = C.dim; ctx.fillText(compact(v), left - 4, Y(v));
    }
    ctx.textAlign = "left";
    for (const v of ticks(0, cmax, 3)) { ctx.fillStyle = C.faint; ctx.fillText(compact(v), w - right + 4, Yc(v)); }
    ctx.textAlign = "center"; ctx.fillStyle = C.dim;
    for (const p of ticks(pmin, pmax, Math.max(2, Math.floor((w - left - right) / 90)))) {
      ctx.fillText(num(p, 0), X(p), h - 7);
    }
    for (const b of bars) {
      if (b.v <= 0) continue;
      ctx.fillStyle = b.side === "long" ? C.long : C.short;
      const x0 = X(b.lo), x1 = X(b.hi);
      ctx.fillRect(x0, Y(b.v), Math.max(1, x1 - x0 - 0.5), Y(0) - Y(b.v));
    }
    for (const side of ["long", "short"]) {
      const pts = bars.filter((b) => b.side === side).map((b) => [X(side === "long" ? b.lo : b.hi), Yc(b.cum)]);
      ctx.strokeStyle = side === "long" ? "#ff9a9d" : "#8ee4b1"; ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.moveTo(X(mark), Yc(0));
      pts.forEach(([x, y]) => ctx.lineTo(x, y)); ctx.stroke();
    }
    ctx.strokeStyle = C.mark; ctx.setLineDash([4, 3]); ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(X(mark), top - 4); ctx.lineTo(X(mark), h - bottom); ctx.stroke(); ctx.setLineDash([]);
    ctx.fillStyle = C.mark; ctx.textAlign = "center"; ctx.fillText("mark " + num(mark, 1), X(mark), top - 8 + 2);
    void unit;
  }

  // --- the heatmap: columns of samples, rows of price bins, colour = notional -------------------------------
  function heatmap(canvas, cols, opts = {}) {
    const { ctx, w, h } = setup(canvas);
    const unit = opts.unit || "";
    const left = 66, right = 74, top = 6, bottom = 16;
    const withMap = cols.filter((c) => c.map);
    if (withMap.length === 0) {
      ctx.fillStyle = C.faint; ctx.fillText("waiting for samples with a liquidation map", left, h / 2);
      return;
    }
    let pmin = Infinity, pmax = -Infinity, vmax = 0;
    for (const c of withMap) {
      const bars = c.bars || (c.bars = mapBars(c.map));
      for (const b of bars) {
        if (b.v > 0) { pmin = Math.min(pmin, b.lo); pmax = Math.max(pmax, b.hi); vmax = Math.max(vmax, b.v); }
      }
      pmin = Math.min(pmin, c.mark); pmax = Math.max(pmax, c.mark);
    }
    if (!(pmax > pmin)) { pmax = pmin + 1; }
    const pad = (pmax - pmin) * 0.02; pmin -= pad; pmax += pad;
    const t0 = cols[0].t, t1 = cols[cols.length - 1].t;
    const span = Math.max(1, t1 - t0);
    const plotW = w - left - right, plotH = h - top - bottom;
    const X = (t) => left + plotW * (t - t0) / span;
    const Y = (p) => top + plotH * (1 - (p - pmin) / (pmax - pmin));
    ctx.fillStyle = C.bg; ctx.fillRect(left, top, plotW, plotH);
    // a sample's column reaches halfway to its neighbours' (samples need not be evenly spaced in event time)
    const half = Math.max(0.5, plotW / Math.max(1, cols.length - 1) / 2);
    const lv = Math.log1p(vmax);
    ctx.save(); ctx.beginPath(); ctx.rect(left, top, plotW, plotH); ctx.clip();
    cols.forEach((c, i) => {
      if (!c.map) return;
      const x = X(c.t);
      const x0 = i > 0 ? (X(cols[i - 1].t) + x) / 2 : x - half;
      const x1 = i < cols.length - 1 ? (x + X(cols[i + 1].t)) / 2 : x + half;
      for (const b of c.bars) {
        if (b.v <= 0) continue;
        ctx.fillStyle = color(Math.log1p(b.v) / lv);
        const y0 = Y(b.hi), y1 = Y(b.lo);
        ctx.fillRect(x0, y0, Math.max(1, x1 - x0) + 0.5, Math.max(1, y1 - y0));
      }
    });
    ctx.restore();
    ctx.strokeStyle = C.mark; ctx.lineWidth = 1.5; ctx.beginPath();
    cols.forEach((c, i) => (i ? ctx.lineTo(X(c.t), Y(c.mark)) : ctx.moveTo(X(c.t), Y(c.mark)))); ctx.stroke();
    ctx.textAlign = "right"; ctx.fillStyle = C.dim;
    for (const p of ticks(pmin, pmax, Math.max(2, Math.floor(plotH / 40)))) ctx.fillText(num(p, 0), left - 4, Y(p));
    ctx.textAlign = "center"; ctx.fillStyle = C.faint;
    const n = Math.max(2, Math.floor(plotW / 110));
    for (let i = 0; i <= n; i++) {
      const t = t0 + span * i / n;
      ctx.fillText(utcTime(t), Math.min(Math.max(X(t), left + 24), left + plotW - 24), h - 7);
    }
    // colour scale
    const sx = w - right + 12, sh = plotH;
    for (let i = 0; i < sh; i++) { ctx.fillStyle = color(1 - i / sh); ctx.fillRect(sx, top + i, 10, 1); }
    ctx.textAlign = "left"; ctx.fillStyle = C.dim;
    ctx.fillText(compact(vmax), sx + 13, top + 5);
    ctx.fillText("0", sx + 13, top + sh - 4);
    ctx.save(); ctx.translate(sx + 20, top + sh / 2); ctx.rotate(-Math.PI / 2); ctx.textAlign = "center";
    ctx.fillStyle = C.faint; ctx.fillText(`${unit} per bin (log)`, 0, 12); ctx.restore();
    ctx.save(); ctx.translate(10, top + plotH / 2); ctx.rotate(-Math.PI / 2); ctx.textAlign = "center";
    ctx.fillStyle = C.faint; ctx.fillText(`price, ${opts.priceUnit || ""}`, 0, 0); ctx.restore();
  }

  return { C, setup, num, compact, pct, utcTime, utcFull, ticks, color, spark, liqMap, heatmap, mapBars };
})();

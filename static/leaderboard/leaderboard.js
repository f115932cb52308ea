// The leaderboard page: sortable table, category and style switches without a reload, plotly charts, and live
// updates when the websocket says a new snapshot landed. Everything shown comes from the server's board, which
// already left out what this viewer may not see.
(() => {
  "use strict";
  const holder = document.getElementById("leaderboard-table");
  const plotData = document.getElementById("leaderboard-plots");
  if (!holder || !plotData) return;
  const categorySelect = document.querySelector("[data-category]");
  const styleBox = document.querySelector("[data-style]");
  const csvLink = document.querySelector("[data-csv]");
  const live = document.querySelector("[data-live]");
  const accent = getComputedStyle(document.documentElement).getPropertyValue("--accent").trim() || "#4f46e5";
  const font = { family: getComputedStyle(document.body).fontFamily, size: 12, color: "#1b1d23" };
  const config = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d"] };

  function params() {
    const p = new URLSearchParams();
    p.set("category", categorySelect ? categorySelect.value : "overall");
    if (styleBox && styleBox.checked) p.set("style", "1");
    const board = document.querySelector("input[data-board]");
    if (board && board.value) p.set("board", board.value);
    return p;
  }

  function sortable(table) {
    const heads = [...table.querySelectorAll("th[data-sort]")];
    heads.forEach((th, col) => th.addEventListener("click", () => {
      const dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
      heads.forEach(h => h.removeAttribute("aria-sort"));
      th.setAttribute("aria-sort", dir);
      const numeric = th.dataset.sort === "num";
      const body = table.tBodies[0];
      const rows = [...body.rows];
      const key = r => r.cells[col].dataset.value;
      rows.sort((a, b) => {
        const x = key(a), y = key(b);
        const c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
        return dir === "ascending" ? c : -c;
      });
      rows.forEach(r => body.appendChild(r));
    }));
  }

  function layout(extra) {
    return Object.assign({ font, margin: { l: 60, r: 20, t: 10, b: 90 }, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)" }, extra);
  }

  // Whole days on the time axis, and a few days either side when the votes span only one or two.
  function dayAxis(days) {
    const day = 86400000;
    const axis = { type: "date", tickformat: "%b %d", gridcolor: "#eceef4" };
    if (!days.length) return axis;
    const first = Date.parse(days[0]), last = Date.parse(days[days.length - 1]);
    if (last - first < 7 * day) {
      axis.range = [new Date(first - 3 * day).toISOString(), new Date(last + 3 * day).toISOString()];
      axis.dtick = day;
    }
    return axis;
  }

  // Counts take whole-number ticks: a step of 1, 2 or 5 times a power of ten giving about five ticks.
  function countAxis(max, extra) {
    const raw = Math.max(1, max) / 5;
    const power = 10 ** Math.floor(Math.log10(raw));
    const step = Math.max(1, [1, 2, 5, 10].map(m => m * power).find(s => s >= raw));
    return Object.assign({ rangemode: "tozero", tickmode: "linear", tick0: 0, dtick: step, tickformat: ",d" }, extra);
  }

  // Plots only where there is something to draw: no empty axes on a board without scores, votes or pairs.
  function showPlots(p) {
    const section = document.querySelector("[data-plots]");
    const has = { names: !!(p && p.names.length), days: !!(p && p.days.length) };
    has.pairs = has.names;  // one model: the matrices say so in words (below), with no axes
    if (section) section.hidden = !has.names;
    document.querySelectorAll("[data-plot-card]").forEach((card) => (card.hidden = !has[card.dataset.plotCard]));
    return has;
  }

  function draw(p) {
    const has = showPlots(p);
    if (!has.names || !window.Plotly) return;
    const names = p.names;
    const totals = p.votes_per_day.reduce((acc, n) => (acc.push((acc.at(-1) || 0) + n), acc), []);
    Plotly.react("plot-scores", [{
      type: "scatter", mode: "markers", x: names, y: p.scores,
      error_y: { type: "data", symmetric: false, array: p.plus, arrayminus: p.minus, color: "#9aa0b4", thickness: 1.5, width: 4 },
      marker: { size: 9, color: p.inhouse.map(h => h ? accent : "#1b1d23") },
      hovertemplate: "%{x}<br>score %{y:.0f}<extra></extra>",
    }], layout({ yaxis: { title: "score", gridcolor: "#eceef4", zeroline: false }, xaxis: { tickangle: -35, automargin: true } }), config);
    // A matrix of one model says nothing: say so instead of drawing an empty grid.
    const alone = names.length < 2 ? {
      annotations: [{ text: "Needs votes between at least two models", showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5, font: { color: "#6b7080" } }],
      xaxis: { visible: false }, yaxis: { visible: false },
    } : {};
    const heat = (id, z, colorscale, fmt, zmin, zmax) => Plotly.react(id, names.length < 2 ? [] : [{
      type: "heatmap", x: names, y: names, z, colorscale, zmin, zmax, xgap: 1, ygap: 1,
      texttemplate: names.length <= 14 ? fmt : "", hovertemplate: "%{y} vs %{x}: " + fmt + "<extra></extra>",
      hoverongaps: false,
    }], layout(Object.assign({
      // automargin grows the margins to fit the longest model name instead of clipping it.
      margin: { l: 20, r: 10, t: 10, b: 20 },
      xaxis: { tickangle: -35, side: "bottom", automargin: true },
      yaxis: { autorange: "reversed", automargin: true },
    }, alone)), config);
    heat("plot-winrate", p.win_matrix, "RdBu", "%{z:.2f}", 0, 1);
    heat("plot-battles", p.battle_matrix, [[0, "#f6f7fb"], [1, accent]], "%{z:.0f}");
    if (!has.days) return;
    Plotly.react("plot-votes", [{
      type: "bar", x: p.days, y: p.votes_per_day, marker: { color: accent }, name: "votes per day",
      width: p.days.map(() => 0.8 * 86400000),  // a date axis sizes bars in milliseconds
      hovertemplate: "%{x}: %{y} votes<extra></extra>",
    }, {
      type: "scatter", mode: "lines+markers", x: p.days, y: totals,
      yaxis: "y2", line: { color: "#0f9d58", width: 2 }, name: "total",
    }], layout({
      margin: { l: 50, r: 60, t: 10, b: 50 }, showlegend: true, legend: { orientation: "h", y: 1.12 }, bargap: 0.15,
      xaxis: dayAxis(p.days),
      yaxis: countAxis(Math.max(0, ...p.votes_per_day), { title: "per day", gridcolor: "#eceef4" }),
      yaxis2: countAxis(totals.at(-1) || 0, { title: "total", overlaying: "y", side: "right", showgrid: false }),
    }), config);
  }

  async function refresh(push) {
    const p = params();
    const response = await fetch(`/leaderboard/data/?${p}`, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!response.ok) return;
    const data = await response.json();
    holder.innerHTML = data.table_html;
    const table = holder.querySelector("table[data-sortable]");
    if (table) sortable(table);
    draw(data.plots);
    if (csvLink) csvLink.href = `/leaderboard/rankings.csv?${p}`;
    if (push) history.replaceState(null, "", `?${p}`);
  }

  function connect(delay) {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/leaderboard/`);
    ws.onopen = () => { if (live) live.hidden = false; delay = 1000; };
    ws.onmessage = event => {
      const frame = JSON.parse(event.data);
      if (frame.type !== "snapshot") return;
      refresh(false).then(() => {
        if (!live) return;
        live.classList.add("flash");
        setTimeout(() => live.classList.remove("flash"), 1200);
      });
    };
    ws.onclose = () => {
      if (live) live.hidden = true;
      setTimeout(() => connect(Math.min(delay * 2, 30000)), delay);
    };
  }

  const table = holder.querySelector("table[data-sortable]");
  if (table) sortable(table);
  draw(JSON.parse(plotData.textContent));
  if (categorySelect) categorySelect.addEventListener("change", () => refresh(true));
  if (styleBox) styleBox.addEventListener("change", () => refresh(true));
  connect(1000);
})();

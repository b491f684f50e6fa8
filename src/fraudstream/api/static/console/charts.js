// Chart helpers over the vendored uPlot: a time-series chart and a histogram, sized to
// their container, in the console's colours.
import uPlot from "./uPlot.esm.js";

const KNOWN = { approve: "#3fb950", review: "#d29922", block: "#f85149", step_up: "#a371f7" };
const SPARE = ["#58a6ff", "#ff7b72", "#79c0ff", "#e3b341", "#db61a2", "#56d4dd"];

/** The colour of an outcome; an outcome the console does not know gets a stable spare. */
export function colorOf(outcome) {
  if (KNOWN[outcome]) return KNOWN[outcome];
  let h = 0;
  for (const c of outcome) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return SPARE[h % SPARE.length];
}

const AXIS = { stroke: "#8b949e", grid: { stroke: "#21262d", width: 1 }, ticks: { stroke: "#30363d", width: 1 } };

function sized(el, opts, data) {
  const chart = new uPlot({ ...opts, width: el.clientWidth, height: el.clientHeight }, data, el);
  new ResizeObserver(() => chart.setSize({ width: el.clientWidth, height: el.clientHeight })).observe(el);
  return chart;
}

/** A chart of per-second series; ``series``: [{label, color, fill}]; ``log``: log y scale. */
export function timeChart(el, series, { log = false, unit = "" } = {}) {
  const opts = {
    legend: { show: true, live: false },
    cursor: { drag: { x: false, y: false } },
    scales: { y: log ? { distr: 3 } : { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
    axes: [
      { ...AXIS, values: (u, ticks) => ticks.map((t) => new Date(t * 1000).toLocaleTimeString([], { hour12: false })) },
      { ...AXIS, size: 56, values: (u, ticks) => ticks.map((t) => (t == null ? "" : `${+t.toPrecision(3)}${unit}`)) },
    ],
    series: [{}, ...series.map((s) => ({
      label: s.label, stroke: s.color, width: 2, fill: s.fill ? s.color + "26" : undefined,
      points: { show: false }, spanGaps: false,
    }))],
  };
  const empty = [[], ...series.map(() => [])];
  return sized(el, opts, empty);
}

/** Bars over score bins (``edges``: each bin's start), log y scale. */
export function histogram(el, edges, width, color) {
  const opts = {
    legend: { show: false },
    cursor: { show: false },
    scales: { x: { time: false, range: [0, edges[edges.length - 1] + width] }, y: { distr: 3 } },
    axes: [{ ...AXIS }, { ...AXIS, size: 56 }],
    series: [{}, {
      label: "decisions", stroke: color, fill: color + "99", width: 1,
      paths: uPlot.paths.bars({ size: [1, Infinity], gap: 2, align: 1 }), points: { show: false },
    }],
  };
  return sized(el, opts, [edges, edges.map(() => null)]);
}

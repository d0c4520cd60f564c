// @ts-check
// The admin overview: a project's counts, serving model and threshold, and the share of labels
// given by people along the stream (from snapshots taken every 5 s while the page is open,
// kept in this browser's localStorage).

import { api, ApiFailure, onConnection } from "./api.js";

/** @param {string} id */
function $(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return el;
}

/** @typedef {{labeled: number, human: number}} Point */

const select = /** @type {HTMLSelectElement} */ ($("project"));
/** @type {number | undefined} */
let timer;

onConnection((ok, detail) => {
  $("banner").hidden = ok;
  $("banner-text").textContent = ok ? "" : `Connection lost: ${detail}. Retrying…`;
});

/** @param {string} project */
function historyKey(project) {
  return `labelloop.overview.${project}`;
}

/** @param {string} project @param {number} labeled @param {number} human @returns {Point[]} */
function remember(project, labeled, human) {
  /** @type {Point[]} */
  let points = [];
  try {
    points = JSON.parse(localStorage.getItem(historyKey(project)) || "[]");
  } catch {
    points = [];
  }
  const last = points[points.length - 1];
  if (!last || last.labeled !== labeled) points.push({ labeled, human });
  points = points.filter((p) => p.labeled <= labeled).slice(-500);
  localStorage.setItem(historyKey(project), JSON.stringify(points));
  return points;
}

/** @param {Point[]} points */
function draw(points) {
  const svg = $("chart");
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const W = 600, H = 200, L = 40, B = 20;
  const axis = document.createElementNS(ns, "path");
  axis.setAttribute("class", "axis");
  axis.setAttribute("d", `M${L},5 V${H - B} H${W - 5}`);
  svg.append(axis);
  for (const [y, text] of [[5, "100%"], [(H - B) / 2 + 2.5, "50%"], [H - B, "0%"]]) {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", "2");
    t.setAttribute("y", String(Number(y) + 4));
    t.textContent = String(text);
    svg.append(t);
  }
  const shares = [];
  for (let i = 1; i < points.length; i++) {
    const dl = points[i].labeled - points[i - 1].labeled;
    if (dl > 0) shares.push({ x: points[i].labeled, y: (points[i].human - points[i - 1].human) / dl });
  }
  if (!shares.length) {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", String(L + 10));
    t.setAttribute("y", String(H / 2));
    t.textContent = "waiting for new labels…";
    svg.append(t);
    return;
  }
  const x0 = points[0].labeled, x1 = Math.max(shares[shares.length - 1].x, x0 + 1);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute(
    "points",
    shares
      .map((s) => `${(L + ((s.x - x0) / (x1 - x0)) * (W - L - 5)).toFixed(1)},${(5 + (1 - Math.max(0, Math.min(1, s.y))) * (H - B - 5)).toFixed(1)}`)
      .join(" "),
  );
  svg.append(line);
  const t = document.createElementNS(ns, "text");
  t.setAttribute("x", String(W - 120));
  t.setAttribute("y", String(H - 4));
  t.textContent = `${x0} → ${x1} labeled`;
  svg.append(t);
}

async function refresh() {
  clearTimeout(timer);
  const project = select.value;
  if (!project) return;
  try {
    const o = await api("GET", `/api/projects/${encodeURIComponent(project)}/overview`);
    $("overview").hidden = false;
    $("overview-title").textContent = project;
    for (const key of ["ingested", "auto_labeled", "waiting_for_people", "human_labeled", "dead_letters"]) {
      $(key).textContent = String(o[key]);
    }
    $("human_share").textContent = o.human_share === null ? "–" : `${(o.human_share * 100).toFixed(1)}%`;
    $("serving_version").textContent = o.serving_version ? `v${o.serving_version}` : "none yet";
    $("threshold").textContent = o.threshold > 1 ? "admits nothing" : o.threshold.toFixed(3);
    $("target_precision").textContent = o.target_precision.toFixed(3);
    $("audited_precision").textContent = o.audited_precision === null ? "no audits yet" : o.audited_precision.toFixed(3);
    const note = $("audit_note");
    if (o.audited_precision === null) {
      note.textContent = "";
      delete note.dataset.level;
    } else {
      const meets = o.audited_precision >= o.target_precision;
      note.textContent = `${o.audits} audits: ${meets ? "meets" : "BELOW"} the target`;
      note.dataset.level = meets ? "ok" : "error";
    }
    draw(remember(project, o.auto_labeled + o.human_labeled, o.human_labeled));
    $("message").textContent = "";
  } catch (err) {
    if (err instanceof ApiFailure && err.status === 401) {
      location.href = "/";
      return;
    }
    $("message").textContent = err instanceof Error ? err.message : String(err);
  }
  timer = window.setTimeout(refresh, 5000);
}

async function start() {
  try {
    const me = await api("GET", "/api/me");
    if (me.role !== "admin") {
      $("message").textContent = "The overview is for admins; log in with an admin token.";
      return;
    }
    const { projects } = await api("GET", "/api/projects");
    for (const p of projects) {
      const option = document.createElement("option");
      option.value = option.textContent = p.project_id;
      select.append(option);
    }
    const wanted = new URLSearchParams(location.hash.slice(1)).get("project");
    if (wanted && projects.some((/** @type {{project_id: string}} */ p) => p.project_id === wanted)) select.value = wanted;
    select.addEventListener("change", () => {
      history.replaceState(null, "", `#project=${encodeURIComponent(select.value)}`);
      refresh();
    });
    await refresh();
  } catch (err) {
    if (err instanceof ApiFailure && err.status === 401) location.href = "/";
    else $("message").textContent = String(err);
  }
}

start();

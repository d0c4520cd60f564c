// @ts-check
// The annotator page: log in, pick a project, label one task at a time from the keyboard.
//
// - Lease-ahead: the page holds the task shown plus one more, so the next appears at once.
// - Undo: an answer is held here for `undo_window_s` (Ctrl+Z takes it back), then sent; it is
//   sent earlier when the task's lease would run out. Held answers are kept in localStorage and
//   sent when the page is hidden or closed, and again (idempotent per lease) on the next load,
//   which says whether each one was recorded: nothing answered is lost silently.
// - Closing the page releases the leases it held.
// - Errors: 401 -> login; 409 (lease lost) -> say so, next task; network/503 -> banner, retry.
// The page never says who the user is: the server knows it from the session cookie.

import { api, ApiFailure, onConnection } from "./api.js";

/** @typedef {{label: string, key: string}} LabelKey */
/** @typedef {{project_id: string, labels: LabelKey[], multi_label?: boolean}} Project */
/** @typedef {{label: string, probability: number}} Score */
/**
 * @typedef {{lease_id: string, lease_expires_at: number, task_id: string, item_id: string,
 *   project_id: string, content: {text?: string, media?: {uri: string, content_type: string, url: string}},
 *   reason: string, reason_text: string, suggestion: string|null, preselect: string|null,
 *   top3: Score[], shown_at?: number, multi_label?: boolean, preselect_labels?: string[],
 *   uncertain_labels?: string[]}} Task
 */
/**
 * @typedef {{lease_id: string, label: string, labels?: string[], project_id: string, item_id: string,
 *   held_at: number, seconds: number}} HeldAnswer
 * `labels` is set for a multi-label answer (`label` then only describes it).
 */

const PENDING_KEY = "labelloop.pending";
const LEASE_MARGIN_MS = 3000; // send a held answer this long before its lease would end

/** @param {string} id */
function $(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return el;
}

const state = {
  /** @type {{name: string, role: string, projects: string[], undo_window_s: number} | null} */
  me: null,
  /** @type {Project[]} */
  projects: [],
  /** @type {Project | null} */
  project: null,
  /** @type {Task[]} the task shown first, then the one leased ahead */
  tasks: [],
  /** @type {{answer: HeldAnswer, task: Task, timer: number} | null} */
  held: null,
  filling: false,
  /** @type {number | undefined} */
  emptyTimer: undefined,
  /** @type {Map<string, string>} key -> label */
  keys: new Map(),
  /** @type {Set<string>} multi-label projects: the labels turned on for the task shown */
  toggled: new Set(),
};

function multiLabel() {
  return !!(state.project && state.project.multi_label);
}

// ---------------------------------------------------------------- held answers (localStorage)

/** @returns {HeldAnswer[]} */
function storedAnswers() {
  try {
    return JSON.parse(localStorage.getItem(PENDING_KEY) || "[]");
  } catch {
    return [];
  }
}

/** @param {HeldAnswer[]} answers */
function storeAnswers(answers) {
  localStorage.setItem(PENDING_KEY, JSON.stringify(answers));
}

/** @param {HeldAnswer} answer */
function keepAnswer(answer) {
  storeAnswers([...storedAnswers().filter((a) => a.lease_id !== answer.lease_id), answer]);
}

/** @param {string} leaseId */
function forgetAnswer(leaseId) {
  storeAnswers(storedAnswers().filter((a) => a.lease_id !== leaseId));
}

// ---------------------------------------------------------------- my pace (this browser, today)

function statsKey() {
  const day = new Date().toISOString().slice(0, 10);
  return `labelloop.stats.${state.me ? state.me.name : ""}.${day}`;
}

/** @returns {{answers: number, seconds: number}} */
function myStats() {
  try {
    return JSON.parse(localStorage.getItem(statsKey()) || '{"answers":0,"seconds":0}');
  } catch {
    return { answers: 0, seconds: 0 };
  }
}

/** @param {number} seconds */
function countAnswer(seconds) {
  const s = myStats();
  s.answers += 1;
  s.seconds += Math.min(seconds, 600);
  localStorage.setItem(statsKey(), JSON.stringify(s));
  renderMyStats();
}

function renderMyStats() {
  const s = myStats();
  $("stat-mine").textContent = String(s.answers);
  $("stat-pace").textContent = s.answers ? (s.seconds / s.answers).toFixed(1) : "–";
}

// ---------------------------------------------------------------- messages

/** @param {string} text @param {"info"|"warn"|"error"} [level] */
function say(text, level = "info") {
  const el = $("message");
  el.textContent = text;
  el.dataset.level = level;
}

onConnection((ok, detail) => {
  $("banner").hidden = ok;
  if (!ok) $("banner-text").textContent = `Connection lost: ${detail}. Retrying…`;
});

// ---------------------------------------------------------------- screens

/** @param {"login"|"picker"|"work"} name */
function show(name) {
  for (const id of ["login", "picker", "work"]) $(id).hidden = id !== name;
  $("nav").hidden = name === "login";
  $("who").hidden = name === "login";
}

function showLogin(message = "") {
  state.me = null;
  show("login");
  $("login-error").textContent = message;
  /** @type {HTMLInputElement} */ ($("token")).focus();
}

async function start() {
  try {
    state.me = await api("GET", "/api/me");
  } catch (err) {
    if (err instanceof ApiFailure && err.status === 401) return showLogin();
    throw err;
  }
  await loggedIn();
}

async function loggedIn() {
  const me = state.me;
  if (!me) return;
  $("who").textContent = `${me.name} (${me.role})`;
  $("overview-link").hidden = me.role !== "admin";
  await sendStoredAnswers();
  state.projects = (await api("GET", "/api/projects")).projects;
  const wanted = new URLSearchParams(location.hash.slice(1)).get("project");
  const chosen = state.projects.find((p) => p.project_id === wanted);
  if (chosen) return openProject(chosen);
  if (state.projects.length === 1) return openProject(state.projects[0]);
  showPicker();
}

function showPicker() {
  leaveProject();
  show("picker");
  const list = $("project-list");
  list.replaceChildren();
  state.projects.forEach((p, i) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    const key = i < 9 ? String(i + 1) : "";
    if (key) {
      const kbd = document.createElement("kbd");
      kbd.textContent = key;
      button.append(kbd, " ");
      button.setAttribute("aria-keyshortcuts", key);
    }
    button.append(p.project_id);
    button.setAttribute("aria-label", `Label project ${p.project_id}`);
    button.dataset.key = key;
    button.addEventListener("click", () => openProject(p));
    li.append(button);
    list.append(li);
  });
  if (!state.projects.length) list.textContent = "Your token is not scoped to any project.";
  const first = list.querySelector("button");
  if (first) first.focus();
}

/** @param {Project} project */
function openProject(project) {
  leaveProject();
  state.project = project;
  state.keys = new Map(project.labels.filter((l) => l.key).map((l) => [l.key, l.label]));
  history.replaceState(null, "", `#project=${encodeURIComponent(project.project_id)}`);
  $("project-title").textContent = project.project_id;
  show("work");
  renderMyStats();
  fill();
  refreshStats();
}

/** Give back every lease this page holds (best effort, also while the page unloads). */
function leaveProject() {
  if (state.held) sendHeld(true);
  const ids = state.tasks.map((t) => t.lease_id);
  state.tasks = [];
  state.project = null;
  clearTimeout(state.emptyTimer);
  if (ids.length) releaseLeases(ids, true);
}

/** @param {string[]} ids @param {boolean} [closing] */
function releaseLeases(ids, closing = false) {
  return api("POST", "/api/release", { lease_ids: ids }, { keepalive: closing, retry: !closing }).catch(
    () => undefined, // a lease not released ends by itself at its expiry
  );
}

// ---------------------------------------------------------------- tasks

function dropExpired() {
  const now = Date.now();
  const current = state.tasks[0];
  const ending = state.tasks.filter((t) => t.lease_expires_at * 1000 <= now + 1000);
  if (!ending.length) return false;
  state.tasks = state.tasks.filter((t) => !ending.includes(t));
  if (current && state.tasks[0] !== current) {
    say("The lease on the task you were viewing expired, so it went back to the queue. Here is the next one.", "warn");
  }
  releaseLeases(ending.map((t) => t.lease_id)); // back to the queue now, not in a second
  return true;
}

/** Lease until the page holds the shown task plus one ahead. */
async function fill() {
  if (state.filling || !state.project) return;
  state.filling = true;
  const project = state.project;
  try {
    dropExpired();
    while (state.project === project && state.tasks.length < 2) {
      const task = await api("POST", `/api/projects/${encodeURIComponent(project.project_id)}/lease`, {});
      if (state.project !== project) {
        if (task) releaseLeases([task.lease_id]);
        return;
      }
      if (!task) break; // 204: nothing waiting for this person
      state.tasks.push(task);
      if (state.tasks.length === 1) render();
    }
  } catch (err) {
    handleError(err);
  } finally {
    state.filling = false;
  }
  if (state.project !== project) return;
  render();
  clearTimeout(state.emptyTimer);
  if (state.tasks.length < 2) state.emptyTimer = window.setTimeout(fill, 3000);
}

let renderedLease = "";

function render() {
  const task = state.tasks[0];
  $("task").hidden = !task;
  $("empty").hidden = !!task || state.filling;
  if (!task) {
    renderedLease = "";
    $("stat-lease").textContent = "–";
    return;
  }
  if (task.lease_id === renderedLease) return;
  renderedLease = task.lease_id;
  task.shown_at = task.shown_at || Date.now();
  const audit = task.reason === "audit" || task.reason === "exploration" || task.reason === "review";
  $("reason-badge").textContent = task.reason.replace("_", " ");
  $("reason-badge").dataset.reason = task.reason;
  $("reason-text").textContent = task.reason_text;

  const content = $("content");
  content.replaceChildren();
  if (task.content.media && task.content.media.content_type.startsWith("image/")) {
    const img = document.createElement("img");
    img.src = task.content.media.url;
    img.alt = `Item ${task.item_id}`;
    img.addEventListener("load", () => img.classList.toggle("small", img.naturalWidth < 112));
    content.append(img);
  } else {
    const p = document.createElement("p");
    p.className = "text";
    p.textContent = task.content.text ?? task.content.media?.uri ?? "";
    content.append(p);
  }

  const multi = multiLabel();
  $("suggestion-text").textContent = multi
    ? "Turn on every label that applies (its key or a click), then Enter submits; none on means no label applies." +
      (task.uncertain_labels && task.uncertain_labels.length
        ? ` Marked ? (the model was unsure): ${task.uncertain_labels.join(", ")}.`
        : "")
    : task.suggestion
    ? `The model suggests “${task.suggestion}”: Enter accepts it.`
    : audit
      ? task.reason === "review"
        ? "A review: the answers given before are hidden so they do not sway yours."
        : "A sample that checks the model: its answer is hidden so it does not sway yours."
      : "No model suggestion yet.";
  const top3 = $("top3");
  top3.replaceChildren();
  for (const score of task.top3) {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.textContent = score.label;
    const meter = document.createElement("meter");
    meter.min = 0;
    meter.max = 1;
    meter.value = score.probability;
    meter.setAttribute("aria-label", `${score.label}: ${(score.probability * 100).toFixed(0)}%`);
    const pct = document.createElement("span");
    pct.textContent = `${(score.probability * 100).toFixed(0)}%`;
    li.append(name, meter, pct);
    top3.append(li);
  }

  const labels = $("labels");
  labels.replaceChildren();
  state.toggled = new Set(multi ? task.preselect_labels || [] : []);
  const uncertain = new Set(task.uncertain_labels || []);
  for (const { label, key } of state.project ? state.project.labels : []) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "label";
    if (key) {
      const kbd = document.createElement("kbd");
      kbd.textContent = key;
      button.append(kbd, " ");
      button.setAttribute("aria-keyshortcuts", key);
    }
    button.append(label);
    button.dataset.label = label;
    if (multi) {
      const unsure = uncertain.has(label);
      if (unsure) {
        button.classList.add("uncertain");
        const mark = document.createElement("span");
        mark.className = "mark";
        mark.textContent = "?";
        mark.setAttribute("aria-hidden", "true");
        button.append(mark);
      }
      button.setAttribute("aria-label", `Toggle ${label}${key ? ` (key ${key})` : ""}${unsure ? ", the model was unsure" : ""}`);
      button.setAttribute("aria-pressed", state.toggled.has(label) ? "true" : "false");
      button.addEventListener("click", (event) => {
        toggle(label);
        // a mouse click gives the keys back to the task (Enter submits); a key press on a
        // focused button (detail 0) keeps the focus where the person is
        if (event.detail > 0) $("task").focus();
      });
      labels.append(button);
      continue;
    }
    button.setAttribute("aria-label", `Answer ${label}${key ? ` (key ${key})` : ""}`);
    const chosen = task.preselect === label;
    button.setAttribute("aria-pressed", chosen ? "true" : "false");
    if (chosen) button.classList.add("suggested");
    button.addEventListener("click", () => answer(label));
    labels.append(button);
  }
  /** @type {HTMLButtonElement} */ ($("accept")).disabled = !multi && !task.suggestion;
  $("accept-text").textContent = multi ? "Submit the labels that are on" : "Accept suggestion";
  $("task").focus();
  tick();
}

function tick() {
  const task = state.tasks[0];
  if (!task) return;
  const left = Math.max(0, Math.round(task.lease_expires_at - Date.now() / 1000));
  $("stat-lease").textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
  if (left <= 1 && dropExpired()) {
    render();
    fill();
  }
}

// ---------------------------------------------------------------- answering

/** Multi-label projects: turn `label` on or off for the task shown. @param {string} label */
function toggle(label) {
  if (!state.tasks[0]) return;
  if (state.toggled.has(label)) state.toggled.delete(label);
  else state.toggled.add(label);
  const button = document.querySelector(`#labels button[data-label="${CSS.escape(label)}"]`);
  if (button) button.setAttribute("aria-pressed", state.toggled.has(label) ? "true" : "false");
}

/** Multi-label projects: answer with the labels turned on, in the project's order. */
function answerToggled() {
  const chosen = (state.project ? state.project.labels : []).map((l) => l.label).filter((l) => state.toggled.has(l));
  answer(chosen.length ? chosen.join(", ") : "no label", chosen);
}

/** @param {string} label @param {string[]} [labels] a multi-label answer (then `label` describes it) */
function answer(label, labels) {
  const task = state.tasks[0];
  if (!task || !state.me || !state.project) return;
  if (state.held) sendHeld(); // one answer is held at a time: the older one goes now
  const now = Date.now();
  /** @type {HeldAnswer} */
  const held = {
    lease_id: task.lease_id,
    label,
    labels,
    project_id: task.project_id,
    item_id: task.item_id,
    held_at: now,
    seconds: (now - (task.shown_at || now)) / 1000,
  };
  keepAnswer(held);
  const windowMs = state.me.undo_window_s * 1000;
  const sendAt = Math.min(now + windowMs, task.lease_expires_at * 1000 - LEASE_MARGIN_MS);
  state.held = { answer: held, task, timer: window.setTimeout(() => sendHeld(), Math.max(0, sendAt - now)) };
  state.tasks.shift();
  showUndo();
  render();
  fill();
}

function showUndo() {
  const bar = $("undo-bar");
  const undo = /** @type {HTMLButtonElement} */ ($("undo"));
  if (!state.held) {
    bar.hidden = true;
    undo.disabled = true;
    return;
  }
  const a = state.held.answer;
  bar.hidden = false;
  bar.textContent = `Answered “${a.label}” for ${a.item_id}. Ctrl+Z undoes it for a few seconds.`;
  undo.disabled = false;
}

function undo() {
  const held = state.held;
  if (!held) {
    say("Nothing to undo: your last answer has already been sent.", "warn");
    return;
  }
  clearTimeout(held.timer);
  state.held = null;
  forgetAnswer(held.answer.lease_id);
  if (held.answer.labels) held.task.preselect_labels = held.answer.labels;
  else held.task.preselect = held.answer.label;
  state.tasks.unshift(held.task);
  renderedLease = "";
  showUndo();
  say(`Undone: “${held.answer.label}” was not sent. Choose again.`);
  render();
}

/** Send the held answer now. @param {boolean} [closing] the page is going away */
function sendHeld(closing = false) {
  const held = state.held;
  if (!held) return;
  clearTimeout(held.timer);
  state.held = null;
  showUndo();
  void submit(held.answer, closing);
}

/** @param {HeldAnswer} a @param {boolean} [closing] */
async function submit(a, closing = false) {
  try {
    const body = a.labels
      ? { lease_id: a.lease_id, labels: a.labels, project_id: a.project_id }
      : { lease_id: a.lease_id, label: a.label, project_id: a.project_id };
    await api("POST", "/api/answer", body, {
      keepalive: closing,
      retry: !closing,
    });
    forgetAnswer(a.lease_id);
    countAnswer(a.seconds);
    return true;
  } catch (err) {
    if (closing) return false; // still stored: sent again on the next load
    if (err instanceof ApiFailure && (err.status === 409 || err.status === 422 || err.status === 403)) {
      forgetAnswer(a.lease_id);
      say(`Your answer “${a.label}” for ${a.item_id} was NOT recorded: ${err.message}`, "error");
      return false;
    }
    handleError(err);
    return false;
  }
}

/** Answers held when the page was last closed: send them (again) and say what happened. */
async function sendStoredAnswers() {
  const stored = storedAnswers();
  if (!stored.length) return;
  const lines = [];
  for (const a of stored) {
    const ok = await submit(a);
    lines.push(`“${a.label}” for ${a.item_id}: ${ok ? "recorded" : "NOT recorded"}`);
  }
  say(`Answers held when the page closed: ${lines.join("; ")}.`, lines.some((l) => l.includes("NOT")) ? "error" : "info");
}

function skip() {
  const task = state.tasks.shift();
  if (!task) return;
  say(`Skipped ${task.item_id}: it went back to the queue.`);
  render();
  // lease the replacement first, so the skipped task is not handed straight back
  fill().finally(() => releaseLeases([task.lease_id]));
}

function accept() {
  const task = state.tasks[0];
  if (task && multiLabel()) return answerToggled();
  if (task && task.suggestion) answer(task.suggestion);
  else if (task) say("This task has no suggestion to accept: choose a label.", "warn");
}

/** @param {unknown} err */
function handleError(err) {
  if (err instanceof ApiFailure) {
    // the first refusal says why (revoked, expired); later calls of the same page only
    // find the cookie gone and would overwrite that with "log in with your token"
    if (err.status === 401) return state.me ? showLogin(err.message) : undefined;
    if (err.status === 409) {
      say(`${err.message}. Loading the next task.`, "warn");
      return;
    }
    say(err.message, "error");
    return;
  }
  say(String(err), "error");
}

async function refreshStats() {
  const project = state.project;
  if (!project) return;
  try {
    const stats = await api("GET", `/api/projects/${encodeURIComponent(project.project_id)}/stats`, undefined, {
      retry: false,
    });
    $("stat-queued").textContent = String(stats.queued + stats.leased);
    $("stat-queued").title = `${stats.queued} waiting, ${stats.leased} being answered`;
  } catch {
    // the banner already says when the connection is lost
  }
  if (state.project === project) window.setTimeout(refreshStats, 5000);
}

// ---------------------------------------------------------------- keys

const help = /** @type {HTMLDialogElement} */ ($("help"));

/** @param {KeyboardEvent} event */
function onKey(event) {
  if (help.open) {
    if (event.key === "?") {
      help.close();
      event.preventDefault();
    }
    return;
  }
  const target = /** @type {HTMLElement} */ (event.target);
  if (target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement) return;
  if (event.key === "?") {
    help.showModal();
    event.preventDefault();
    return;
  }
  if (!$("picker").hidden && !event.ctrlKey && !event.metaKey && !event.altKey) {
    const button = /** @type {HTMLButtonElement | null} */ (document.querySelector(`#project-list button[data-key="${CSS.escape(event.key)}"]`));
    if (button) {
      button.click();
      event.preventDefault();
    }
    return;
  }
  if ($("work").hidden) return;
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
    undo();
    event.preventDefault();
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const onButton = target instanceof HTMLButtonElement;
  if (event.key === "Enter" && !onButton) {
    accept();
    event.preventDefault();
  } else if (event.key === " " && !onButton) {
    skip();
    event.preventDefault();
  } else if (state.keys.has(event.key.toLowerCase()) && event.key.length === 1) {
    const label = /** @type {string} */ (state.keys.get(event.key.toLowerCase()));
    if (multiLabel()) toggle(label);
    else answer(label);
    event.preventDefault();
  }
}

// ---------------------------------------------------------------- wiring

document.addEventListener("keydown", onKey);
$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = /** @type {HTMLInputElement} */ ($("token"));
  $("login-error").textContent = "";
  try {
    state.me = await api("POST", "/api/login", { token: input.value }, { retry: false });
    input.value = "";
    await loggedIn();
  } catch (err) {
    $("login-error").textContent = err instanceof Error ? err.message : String(err);
    input.focus();
  }
});
$("logout").addEventListener("click", async () => {
  leaveProject();
  await api("POST", "/api/logout", {}, { retry: false }).catch(() => undefined);
  showLogin("Logged out.");
});
$("switch-project").addEventListener("click", showPicker);
$("help-button").addEventListener("click", () => help.showModal());
$("accept").addEventListener("click", accept);
$("skip").addEventListener("click", skip);
$("undo").addEventListener("click", undo);
$("banner-retry").addEventListener("click", () => {
  $("banner-text").textContent = "Retrying…";
  if (state.project) fill();
  window.dispatchEvent(new Event("labelloop-retry"));
});
window.addEventListener("pagehide", () => {
  if (state.held) sendHeld(true);
  const ids = state.tasks.map((t) => t.lease_id);
  if (ids.length) releaseLeases(ids, true);
});
window.addEventListener("pageshow", (event) => {
  if (event.persisted) location.reload(); // back from the page cache: its leases were released
});
window.setInterval(tick, 1000);

start().catch(handleError);

// The status page: reads /api/v1/ every few seconds and fills the tables.
// Plain DOM, no library, nothing fetched from elsewhere.  Every value the
// server passes on from clients (agents, URLs, names) is set as text, never as HTML.
"use strict";

const API = "../api/v1/";
const REFRESH_MS = 2000;
const PAGE = 50;
let start = 0;
let asking = null;     // the Promise of the token dialog while it is open
let tokenRequired = false;

function token() { return sessionStorage.getItem("fmspy-admin-token") || ""; }

function askToken(why) {
  if (asking) return asking;
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  document.getElementById("token-why").textContent = why;
  input.value = token();
  asking = new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      asking = null;
      if (dialog.returnValue === "ok" && input.value) {
        sessionStorage.setItem("fmspy-admin-token", input.value);
        resolve(true);
      } else {
        resolve(false);
      }
    }, { once: true });
  });
  dialog.showModal();
  input.focus();
  return asking;
}

async function request(path, method) {
  const headers = {};
  if (token()) headers["Authorization"] = "Bearer " + token();
  return fetch(API + path, { method: method || "GET", headers: headers, cache: "no-store" });
}

async function getJSON(path) {
  if (tokenRequired && !token() && !(await askToken("This server needs its admin token to show its status."))) {
    throw new Error("the admin token is needed");
  }
  let response = await request(path);
  if (response.status === 401) {
    if (!(await askToken("This server needs its admin token to show its status."))) {
      throw new Error("the admin token is needed");
    }
    response = await request(path);
  }
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response.json();
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function fill(tableId, rows, columns, emptyText) {
  const body = document.querySelector("#" + tableId + " tbody");
  body.replaceChildren();
  if (!rows.length) {
    const tr = el("tr", null, "empty");
    const td = el("td", emptyText);
    td.colSpan = document.querySelectorAll("#" + tableId + " thead th").length;
    tr.append(td);
    body.append(tr);
    return;
  }
  for (const row of rows) {
    const tr = el("tr");
    for (const column of columns) {
      const value = column(row, tr);
      tr.append(value instanceof Node ? value : el("td", value === null || value === undefined ? "" : value));
    }
    body.append(tr);
  }
}

function bits(n) {
  if (!n) return "0 bit/s";
  const units = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

function bytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  seconds = Math.floor(seconds);
  const h = Math.floor(seconds / 3600), m = Math.floor(seconds / 60) % 60, s = seconds % 60;
  return (h ? h + "h " : "") + (h || m ? m + "m " : "") + s + "s";
}

function videoText(v) {
  if (!v) return "none";
  const parts = [v.codec || "?"];
  if (v.profile) parts.push(v.profile + (v.level ? " " + v.level : ""));
  if (v.width && v.height) parts.push(v.width + "x" + v.height);
  if (v.frame_rate) parts.push(Math.round(v.frame_rate * 100) / 100 + " fps");
  return parts.join(", ");
}

function audioText(a) {
  if (!a) return "none";
  const parts = [a.codec || "?"];
  if (a.profile) parts.push(a.profile);
  if (a.sample_rate) parts.push(a.sample_rate + " Hz");
  if (a.channels) parts.push(a.channels === 1 ? "mono" : a.channels === 2 ? "stereo" : a.channels + " ch");
  return parts.join(", ");
}

async function disconnect(id, button) {
  if (!token() && !(await askToken("Disconnecting a client needs the admin token."))) return;
  button.disabled = true;
  let response = await request("clients/" + encodeURIComponent(id), "DELETE");
  if (response.status === 401 && (await askToken("That token was refused; the admin token, please."))) {
    response = await request("clients/" + encodeURIComponent(id), "DELETE");
  }
  if (!response.ok) {
    const answer = await response.json().catch(() => ({}));
    problem("disconnect " + id + ": " + (answer.error || "HTTP " + response.status));
    button.disabled = false;
    return;
  }
  refresh();
}

function problem(text) {
  const node = document.getElementById("problem");
  node.textContent = text || "";
  node.hidden = !text;
}

function summary(s) {
  document.getElementById("node").textContent = s.node + " \u00b7 pid " + s.pid + " \u00b7 " + s.version;
  const items = [
    ["uptime", duration(s.uptime_seconds)], ["connections", s.connections],
    ["accepted", s.connections_accepted], ["clients", s.clients], ["streams", s.streams],
    ["in", bits(s.bits_in_per_second)], ["out", bits(s.bits_out_per_second)],
    ["received", bytes(s.bytes_in)], ["sent", bytes(s.bytes_out)], ["CPU", s.cpu_percent + " %"],
    ["memory", bytes(s.memory_bytes)], ["AMF codec", s.amf_codec],
  ];
  const list = document.getElementById("summary");
  list.replaceChildren();
  for (const [name, value] of items) {
    const box = el("div");
    box.append(el("dt", name), el("dd", value));
    box.dataset.name = name;
    list.append(box);
  }
}

async function refresh() {
  try {
    const [s, apps, rooms, clients, streams, gateway] = await Promise.all([
      getJSON("summary"), getJSON("applications"), getJSON("rooms"),
      getJSON("clients?start=" + start + "&count=" + PAGE), getJSON("streams"), getJSON("gateway")]);
    summary(s);
    fill("applications", apps, [(a) => a.name, (a) => a.class, (a) => a.clients, (a) => a.rooms, (a) => a.streams],
         "no applications");
    fill("rooms", rooms, [(r) => r.app, (r) => r.default ? "(default)" : r.name, (r) => r.clients], "no rooms");
    if (start && start >= clients.total) start = Math.max(0, Math.floor((clients.total - 1) / PAGE) * PAGE);
    document.getElementById("prev").disabled = start === 0;
    document.getElementById("next").disabled = start + PAGE >= clients.total;
    document.getElementById("clients-total").textContent = "(" + clients.total + ")";
    document.getElementById("page").textContent = clients.total
      ? (clients.start + 1) + "\u2013" + (clients.start + clients.count) + " of " + clients.total : "";
    fill("clients", clients.clients, [
      (c, tr) => {
        tr.dataset.client = c.id;
        const td = el("td");
        const button = el("button", "disconnect", "disconnect");
        button.type = "button";
        button.addEventListener("click", () => disconnect(c.id, button));
        td.append(button);
        return td;
      },
      (c) => c.id, (c) => c.address, (c) => c.transport, (c) => c.app,
      (c) => c.room || "(default)", (c) => c.agent,
      (c) => el("td", [c.page_url, c.swf_url].filter(Boolean).join(" "), "wrap"),
      (c) => duration(c.connected_seconds),
      (c) => bytes(c.bytes_in) + " \u00b7 " + bits(c.bits_in_per_second),
      (c) => bytes(c.bytes_out) + " \u00b7 " + bits(c.bits_out_per_second),
      (c) => c.streams.map((x) => x.type + " " + x.name).join(", "),
    ], "no clients connected");
    fill("streams", streams, [
      (x, tr) => { tr.dataset.stream = x.app + "/" + x.name; return x.app; }, (x) => x.name,
      (x) => x.publisher ? x.publisher + " (" + x.publisher_address + ")" : "waiting for a publisher",
      (x) => duration(x.age_seconds), (x) => bits(x.bits_in_per_second), (x) => bits(x.bits_out_per_second),
      (x) => x.players, (x) => el("td", videoText(x.video), "video"), (x) => el("td", audioText(x.audio), "audio"),
      (x) => x.recording ? "yes" : "no",
    ], "no live streams");
    const routes = [];
    for (const app of gateway) for (const r of app.routes) routes.push(Object.assign({ app: app.app }, r));
    fill("gateway", routes, [
      (r, tr) => { tr.dataset.route = r.app + "/" + r.route; return r.app; }, (r) => r.route, (r) => r.endpoint,
      (r) => el("td", r.health + (r.health === "failing" && r.last_outcome ? " (" + r.last_outcome + ")" : ""),
                "health health-" + r.health),
      (r) => r.calls,
      (r) => r.errors + (r.errors ? " (" + Object.entries(r.errors_by_kind).map(([k, n]) => k + " " + n)
        .join(", ") + ")" : ""),
      (r) => r.latency_p50_ms === null ? "" : r.latency_p50_ms + " ms",
      (r) => r.latency_p99_ms === null ? "" : r.latency_p99_ms + " ms",
      (r) => r.in_flight, (r) => r.circuit,
    ], "no gateway calls yet");
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    problem("");
  } catch (e) {
    problem(e.message);
  }
}

async function begin() {
  // The API's index is open: it says whether a token is needed, so none is asked for in vain.
  const index = await fetch(API, { cache: "no-store" }).then((r) => r.json()).catch(() => ({}));
  tokenRequired = Boolean(index.token_required);
  refresh();
  setInterval(() => { if (!asking) refresh(); }, REFRESH_MS);
}

document.getElementById("prev").addEventListener("click", () => { start = Math.max(0, start - PAGE); refresh(); });
document.getElementById("next").addEventListener("click", () => { start += PAGE; refresh(); });
begin();

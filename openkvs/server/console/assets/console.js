// The OpenKVS console: every action is the AWS operation a boto3 client would call,
// sent with the console's session cookie instead of a SigV4 signature.
"use strict";

const $ = (sel) => document.querySelector(sel);
const POLL_MS = 2000;
const THUMBNAILS = 8;
const SESSION_S = 43200;  // the longest an HLS session may last
const state = {
  streams: [], selected: null, stats: {}, prevStats: null, rates: {}, skew: 0,
  windowEnd: null, selectedTime: null, hls: null, timer: null, timelineAt: 0,
  fragments: [], playing: 0, drawing: 0,
};
const now = () => Date.now() / 1000 + state.skew;  // the server's clock, as its stats said
const TIMELINE_MS = 10000;  // how often a timeline that follows now reloads

class ApiError extends Error {}

async function call(op, body, binary = false) {
  const response = await fetch("/" + op, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-OpenKVS-Console": "1" },
    body: JSON.stringify(body || {}),
  });
  if (!response.ok) {
    let text = response.statusText;
    try { const j = await response.json(); text = j.message || j.Message || text; } catch (e) { /* not JSON */ }
    const type = response.headers.get("x-amzn-ErrorType") || response.status;
    if (response.status === 403 && type === "MissingAuthenticationTokenException") showLogin();
    throw new ApiError(`${op}: ${type}: ${text}`);
  }
  return binary ? response.blob() : response.json();
}

async function consoleApi(path, body) {
  const init = { credentials: "same-origin", headers: { "X-OpenKVS-Console": "1" } };
  if (body !== undefined) {
    Object.assign(init, { method: "POST", body: JSON.stringify(body) });
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch("/console/api/" + path, init);
  const data = await response.json();
  if (!response.ok) throw new ApiError(data.message || response.statusText);
  return data;
}

function say(text, ok = false) {
  const el = $("#message");
  el.textContent = text;
  el.className = ok ? "ok" : "";
}

async function guard(action) {
  try { await action(); } catch (e) { say(e.message); console.warn(e.message); }
}

// ---- formatting ------------------------------------------------------------------------
function bytes(n) {
  if (n === undefined || n === null) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}
function clock(seconds) { return new Date(seconds * 1000).toLocaleTimeString(); }
function ago(seconds) {
  if (!seconds) return "—";
  const s = Math.max(0, now() - seconds);
  if (s < 60) return `${s.toFixed(0)} s ago`;
  if (s < 3600) return `${(s / 60).toFixed(0)} min ago`;
  return new Date(seconds * 1000).toLocaleString();
}

// ---- login -----------------------------------------------------------------------------
function showLogin() {
  $("#login-form").hidden = false;
  $("#console").hidden = true;
  $("#logout-button").hidden = true;
  clearTimeout(state.timer);
  state.timer = null;
  unselect();
  Object.assign(state, { streams: [], stats: {}, prevStats: null, rates: {} });
}

function showConsole(session) {
  $("#login-form").hidden = true;
  $("#console").hidden = false;
  $("#logout-button").hidden = !session.auth;
  $("#user").textContent = session.auth ? session.user : "authentication off";
  if (state.timer === null) poll();
}

async function poll() {  // one refresh at a time, the next 2 s after this one ends
  state.timer = 0;
  await refresh();
  if (!$("#console").hidden) state.timer = setTimeout(poll, POLL_MS);
}

async function start() {
  const session = await consoleApi("session");
  if (session.auth && !session.user) showLogin(); else showConsole(session);
}

$("#login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  guard(async () => {
    const session = await consoleApi("login", {
      accessKeyId: $("#access-key").value.trim(), secretAccessKey: $("#secret-key").value,
    });
    $("#secret-key").value = "";
    say("");
    showConsole(session);
  });
});

$("#logout-button").addEventListener("click", () => guard(async () => {
  await consoleApi("logout", {});
  showLogin();
}));

// ---- the stream list ---------------------------------------------------------------------
async function listStreams() {
  const streams = [];
  let token;
  do {
    const page = await call("listStreams", token ? { NextToken: token } : { MaxResults: 1000 });
    streams.push(...page.StreamInfoList);
    token = page.NextToken;
  } while (token);
  return streams;
}

function measureRates(stats) {
  const prev = state.prevStats;
  state.skew = stats.now - Date.now() / 1000;
  if (prev) {
    const dt = stats.now - prev.now;
    for (const [name, s] of Object.entries(stats.streams)) {
      const before = prev.streams[name];
      if (before && dt > 0) state.rates[name] = (s.bytesIn - before.bytesIn) * 8 / dt;
    }
  }
  state.prevStats = stats;
}

async function refresh() {
  await guard(async () => {
    const [streams, stats] = await Promise.all([listStreams(), consoleApi("stats")]);
    state.streams = streams;
    state.stats = stats.streams;
    measureRates(stats);
    if (state.selected && !current()) {  // deleted, here or elsewhere
      say(`${state.selected} is gone.`, true);
      unselect();
    }
    renderStreams();
    if (state.selected) renderDetail();
    if (state.selected && state.windowEnd === null && Date.now() - state.timelineAt > TIMELINE_MS) {
      loadTimeline();
    }
  });
}

function renderStreams() {
  const body = $("#streams tbody");
  body.replaceChildren(...state.streams.map((s) => {
    const row = document.createElement("tr");
    row.dataset.stream = s.StreamName;
    row.classList.toggle("selected", s.StreamName === state.selected);
    const st = state.stats[s.StreamName] || {};
    const rate = state.rates[s.StreamName];
    for (const text of [
      s.StreamName, s.Status, `${s.DataRetentionInHours} h`,
      rate === undefined ? "—" : `${(rate / 1e6).toFixed(2)} Mbit/s`, ago(st.lastFragment),
    ]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    row.addEventListener("click", () => select(s.StreamName));
    return row;
  }));
}

$("#create-form").addEventListener("submit", (event) => {
  event.preventDefault();
  guard(async () => {
    const name = $("#create-name").value.trim();
    await call("createStream", {
      StreamName: name, DataRetentionInHours: Number($("#create-retention").value),
      MediaType: "video/h264",
    });
    $("#create-name").value = "";
    say(`Created ${name}.`, true);
    await refresh();
    select(name);
  });
});

// ---- one stream --------------------------------------------------------------------------
function current() { return state.streams.find((s) => s.StreamName === state.selected); }

function unselect() {
  stopPlayer();
  state.selected = null;
  $("#stream-panel").hidden = true;
}

function select(name) {
  if (state.selected !== name) {
    stopPlayer();
    state.windowEnd = null;
    state.selectedTime = null;
    state.fragments = [];
    $("#clip-start").textContent = "that long ago";
    $("#timeline").replaceChildren();
    $("#thumbnails").replaceChildren();
  }
  state.selected = name;
  $("#stream-panel").hidden = false;
  $("#stream-name").textContent = name;
  const s = current();
  if (s) $("#retention-input").value = s.DataRetentionInHours;
  renderStreams();
  renderDetail();
  loadTimeline();
}

function renderDetail() {
  const st = state.stats[state.selected] || {};
  const rate = state.rates[state.selected];
  const rows = [
    ["Ingest rate", rate === undefined ? "—" : `${(rate / 1e6).toFixed(2)} Mbit/s`],
    ["Fragments in", st.fragmentsIn ?? "—"],
    ["Bytes in", bytes(st.bytesIn)],
    ["Fragments out (GetMedia)", st.fragmentsOut ?? "—"],
    ["Bytes out (GetMedia)", bytes(st.bytesOut)],
    ["Live GetMedia readers", st.liveReaders ?? "—"],
    ["Last fragment", st.lastFragment ? `${clock(st.lastFragment)} (${ago(st.lastFragment)})` : "—"],
  ];
  $("#metrics").replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = String(v);
    return [dt, dd];
  }));
}

$("#retention-form").addEventListener("submit", (event) => {
  event.preventDefault();
  guard(async () => {
    const s = current();
    if (!s) return;
    const wanted = Number($("#retention-input").value);
    const change = wanted - s.DataRetentionInHours;
    if (change === 0) return;
    await call("updateDataRetention", {
      StreamName: s.StreamName, CurrentVersion: s.Version,
      Operation: change > 0 ? "INCREASE_DATA_RETENTION" : "DECREASE_DATA_RETENTION",
      DataRetentionChangeInHours: Math.abs(change),
    });
    say(`${s.StreamName} keeps fragments ${wanted} h.`, true);
    await refresh();
  });
});

$("#delete-button").addEventListener("click", () => guard(async () => {
  const s = current();
  if (!s || !confirm(`Delete the stream ${s.StreamName} and every fragment it holds?`)) return;
  unselect();
  await call("deleteStream", { StreamARN: s.StreamARN, CurrentVersion: s.Version });
  say(`Deleted ${s.StreamName}.`, true);
  await refresh();
}));

// ---- the player --------------------------------------------------------------------------
function stopPlayer() {
  state.playing++;  // a session still being opened for an earlier click is dropped
  if (state.hls) { state.hls.destroy(); state.hls = null; }
  const video = $("#video");
  video.removeAttribute("src");
  video.load();
  $("#player-state").textContent = "";
}

function sameOrigin(url) {
  const u = new URL(url);
  return u.pathname + u.search;  // the session lives on the node this page talks to
}

async function play(body, lowLatency) {
  stopPlayer();
  const ticket = state.playing;
  const answer = await call("getHLSStreamingSessionURL", {
    StreamName: state.selected, Expires: SESSION_S, ...body,
  });
  if (ticket !== state.playing) return;
  let url = sameOrigin(answer.HLSStreamingSessionURL);
  if (lowLatency) url += "&LowLatency=1";
  const video = $("#video");
  if (window.Hls && Hls.isSupported()) {
    const hls = state.hls = new Hls({ lowLatencyMode: lowLatency, enableWorker: true });
    hls.on(Hls.Events.ERROR, (_, data) => {
      if (!data.fatal) return;
      const now_ = Date.now();
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR && now_ - (hls.recovered || 0) > 5000) {
        hls.recovered = now_;  // a decode hiccup: once per 5 s, then say so
        hls.recoverMediaError();
      } else {
        say(`player: ${data.type}: ${data.details}`);
      }
    });
    hls.loadSource(url);
    hls.attachMedia(video);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = url;
  } else {
    throw new ApiError("No HLS player: hls.js is missing (run ./scripts/setup with npm installed).");
  }
  $("#player-state").textContent = body.PlaybackMode === "LIVE" ? "live" : "from " + clock(
    body.HLSFragmentSelector.TimestampRange.StartTimestamp);
  await video.play().catch(() => {});
}

$("#live-button").addEventListener("click", () => guard(() => play(
  { PlaybackMode: "LIVE" }, $("#low-latency").checked)));

function playFrom(seconds) {
  // A session begins with the first fragment that starts at or after its start time, so
  // start where the fragment holding the moment picked starts.
  const holding = state.fragments.find((f) => f.ServerTimestamp <= seconds
    && seconds < f.ServerTimestamp + f.FragmentLengthInMilliseconds / 1000);
  const start = holding ? holding.ServerTimestamp : seconds;
  state.selectedTime = start;
  $("#clip-start").textContent = clock(start);
  return guard(() => play({
    PlaybackMode: "ON_DEMAND",
    HLSFragmentSelector: {
      FragmentSelectorType: "SERVER_TIMESTAMP",
      TimestampRange: { StartTimestamp: start, EndTimestamp: Math.min(now(), start + 86399) },
    },
  }, false));
}

// ---- the timeline --------------------------------------------------------------------------
function windowRange() {
  const span = Number($("#window-select").value);
  const end = state.windowEnd ?? now();
  return [end - span, end];
}

async function listFragments(start, end) {
  const fragments = [];
  let body = {
    StreamName: state.selected, MaxResults: 1000,
    FragmentSelector: {
      FragmentSelectorType: "SERVER_TIMESTAMP",
      TimestampRange: { StartTimestamp: start, EndTimestamp: end },
    },
  };
  for (let page = 0; page < 5; page++) {
    const answer = await call("listFragments", body);
    fragments.push(...answer.Fragments);
    if (!answer.NextToken) break;
    body = { StreamName: state.selected, NextToken: answer.NextToken };
  }
  return fragments.sort((a, b) => a.ServerTimestamp - b.ServerTimestamp);  // any order, says AWS
}

async function getImages(start, end) {
  const interval = Math.max(200, Math.floor((end - start) * 1000 / THUMBNAILS));
  const answer = await call("getImages", {
    StreamName: state.selected, ImageSelectorType: "SERVER_TIMESTAMP",
    StartTimestamp: start, EndTimestamp: end, SamplingInterval: interval,
    Format: "JPEG", WidthPixels: 160, MaxResults: THUMBNAILS,
  });
  return answer.Images.filter((image) => image.ImageContent);
}

function loadTimeline() {
  const name = state.selected;
  const drawing = ++state.drawing;  // a later load, or another stream's, wins
  const stale = () => drawing !== state.drawing || state.selected !== name;
  state.timelineAt = Date.now();
  const [start, end] = windowRange();
  $("#timeline-range").textContent = `${clock(start)} – ${clock(end)}`;
  return guard(async () => {
    let fragments = [];
    try {
      fragments = await listFragments(start, end);
    } finally {
      if (!stale()) drawFragments(fragments, start, end);
    }
    let images = [];
    try {
      if (fragments.length && !stale()) {  // over the media there is, not the window's gaps
        const last = fragments[fragments.length - 1];
        const until = last.ServerTimestamp + last.FragmentLengthInMilliseconds / 1000;
        images = await getImages(Math.max(start, fragments[0].ServerTimestamp), Math.min(end, until));
      }
    } finally {
      if (!stale()) drawThumbnails(images);
    }
  });
}

function drawFragments(fragments, start, end) {
  state.fragments = fragments;
  const timeline = $("#timeline");
  const span = end - start;
  timeline.replaceChildren(...fragments.map((f) => {
    const bar = document.createElement("div");
    bar.className = "fragment";
    bar.style.left = `${((f.ServerTimestamp - start) / span) * 100}%`;
    bar.style.width = `${(f.FragmentLengthInMilliseconds / 1000 / span) * 100}%`;
    bar.title = `${f.FragmentNumber} at ${clock(f.ServerTimestamp)}`;
    return bar;
  }));
  timeline.onclick = (event) => {
    const box = timeline.getBoundingClientRect();
    playFrom(start + ((event.clientX - box.left) / box.width) * span);
  };
}

function drawThumbnails(images) {
  $("#thumbnails").replaceChildren(...images.map((image) => {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.src = "data:image/jpeg;base64," + image.ImageContent;
    img.alt = `frame at ${clock(image.TimeStamp)}`;
    const caption = document.createElement("figcaption");
    caption.textContent = clock(image.TimeStamp);
    figure.append(img, caption);
    figure.addEventListener("click", () => playFrom(image.TimeStamp));
    return figure;
  }));
}

function shift(direction) {
  const span = Number($("#window-select").value);
  const [, end] = windowRange();
  const next = end + direction * span;
  state.windowEnd = next >= now() ? null : next;
  loadTimeline();
}
$("#earlier-button").addEventListener("click", () => shift(-1));
$("#later-button").addEventListener("click", () => shift(1));
$("#now-button").addEventListener("click", () => { state.windowEnd = null; loadTimeline(); });
$("#window-select").addEventListener("change", () => loadTimeline());

// ---- clips ---------------------------------------------------------------------------------
$("#clip-button").addEventListener("click", () => guard(async () => {
  const seconds = Number($("#clip-seconds").value);
  const start = state.selectedTime ?? now() - seconds;  // nothing picked: the latest seconds
  const end = Math.min(start + seconds, now());
  say("Preparing the clip…", true);
  const blob = await call("getClip", {
    StreamName: state.selected,
    ClipFragmentSelector: {
      FragmentSelectorType: "SERVER_TIMESTAMP",
      TimestampRange: { StartTimestamp: start, EndTimestamp: end },
    },
  }, true);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `${state.selected}-${new Date(start * 1000).toISOString()}.mp4`;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
  say(`Clip of ${bytes(blob.size)} downloaded.`, true);
}));

start().catch((e) => say(e.message));

// The page of `segue serve`: three forms (continue, generate, resynth) over the JSON API of
// segue/serve/app.py. Inputs come from a file, the microphone (recorded here as a WAV) or a
// bundled example; a job is submitted, then polled for its place in the queue and its stage.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
const POLL_MS = 400;
const STAGE_NAMES = {
  tokenize: "reading the prompt", semantic: "semantic tokens", coarse: "coarse acoustic",
  fine: "fine acoustic", soundstorm: "SoundStorm", decode: "decoding audio",
};

let info = null;
const inputs = { continue: {}, generate: {}, resynth: {} }; // task -> field -> {blob, name}
const running = {}; // task -> job id, while it runs

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new Error("the server cannot be reached (is `segue serve` still running?)");
  }
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    body = null;
  }
  if (!response.ok) {
    throw new Error((body && body.error) || `the server answered ${response.status}`);
  }
  return body;
}

function megabytes(bytes) {
  if (bytes < 1048576) return `${Math.round(bytes / 1024)} KB`;
  return `${(bytes / 1048576).toFixed(1).replace(/\.0$/, "")} MB`;
}

// ---- inputs: a file, a recording, an example
function setInput(fieldset, blob, name) {
  const form = fieldset.closest("form");
  const task = form.dataset.task;
  const key = fieldset.dataset.input;
  const player = $(".input-player", fieldset);
  const infoLine = $(".input-info", fieldset);
  if (player.src) URL.revokeObjectURL(player.src);
  if (!blob) {
    delete inputs[task][key];
    player.removeAttribute("src");
    player.hidden = true;
    infoLine.textContent = "None: the model picks the voice.";
    return;
  }
  inputs[task][key] = { blob, name };
  const file = $("input[type=file]", fieldset);
  if (file.files.length && file.files[0] !== blob) file.value = ""; // an example or a recording
  player.src = URL.createObjectURL(blob);
  player.hidden = false;
  infoLine.textContent = `${name} (${megabytes(blob.size)})`;
  player.onloadedmetadata = () => {
    if (Number.isFinite(player.duration)) {
      infoLine.textContent = `${name}: ${player.duration.toFixed(2)} s (${megabytes(blob.size)})`;
    }
  };
  hideError(form);
  if (info && blob.size > info.max_upload_bytes) {
    showError(form, `${name}: ${megabytes(blob.size)} is over the limit of ${megabytes(info.max_upload_bytes)}`);
  }
}

function encodeWav(chunks, sampleRate) {
  const length = chunks.reduce((n, c) => n + c.length, 0);
  const view = new DataView(new ArrayBuffer(44 + 2 * length));
  const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + 2 * length, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, sampleRate, true); view.setUint32(28, 2 * sampleRate, true);
  view.setUint16(32, 2, true); view.setUint16(34, 16, true);
  text(36, "data"); view.setUint32(40, 2 * length, true);
  let offset = 44;
  for (const chunk of chunks) {
    for (const sample of chunk) {
      view.setInt16(offset, Math.max(-1, Math.min(1, sample)) * 0x7fff, true);
      offset += 2;
    }
  }
  return new Blob([view], { type: "audio/wav" });
}

const recorders = new Map(); // button -> stop function

async function toggleRecording(button) {
  const fieldset = button.closest("fieldset");
  const form = fieldset.closest("form");
  if (recorders.has(button)) {
    recorders.get(button)();
    return;
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showError(form, "recording needs the page opened as localhost or over https");
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    showError(form, `no microphone: ${error.message || error.name}`);
    return;
  }
  const context = new AudioContext();
  const source = context.createMediaStreamSource(stream);
  const node = context.createScriptProcessor(4096, 1, 1);
  const chunks = [];
  node.onaudioprocess = (event) => chunks.push(new Float32Array(event.inputBuffer.getChannelData(0)));
  source.connect(node);
  node.connect(context.destination);
  const limit = info ? info.max_seconds : 30;
  const started = performance.now();
  const label = button.textContent;
  const timer = setInterval(() => {
    const seconds = (performance.now() - started) / 1000;
    button.textContent = `■ Stop (${Math.floor(seconds)} s)`;
    if (seconds >= limit) stop();
  }, 250);
  function stop() {
    clearInterval(timer);
    recorders.delete(button);
    node.disconnect();
    source.disconnect();
    stream.getTracks().forEach((track) => track.stop());
    const rate = context.sampleRate;
    context.close();
    button.textContent = label;
    button.classList.remove("recording");
    if (chunks.length) setInput(fieldset, encodeWav(chunks, rate), "recording.wav");
  }
  recorders.set(button, stop);
  button.classList.add("recording");
  button.textContent = "■ Stop";
}

async function useExample(fieldset, example) {
  const form = fieldset.closest("form");
  try {
    const response = await fetch(`/api/examples/${encodeURIComponent(example.name)}.wav`);
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    setInput(fieldset, await response.blob(), `${example.name}.wav`);
  } catch (error) {
    showError(form, `example ${example.name}: ${error.message}`);
  }
}

// ---- running a job
function showError(form, message) {
  const box = $(".error", form);
  box.textContent = message;
  box.hidden = false;
}

function hideError(form) {
  $(".error", form).hidden = true;
}

function renderStatus(form, status) {
  const progress = $(".progress", form);
  progress.hidden = false;
  const bar = $("progress", progress);
  const list = $(".stages", progress);
  list.replaceChildren(...status.stages.map((name, i) => {
    const item = document.createElement("li");
    const time = status.timings[name] !== undefined ? ` ${status.timings[name].toFixed(1)} s` : "";
    item.textContent = `${STAGE_NAMES[name] || name}${time}`;
    item.className = i < status.stage || status.state === "done" ? "done" : i === status.stage && status.state === "running" ? "now" : "";
    return item;
  }));
  bar.max = status.stages.length;
  bar.value = status.state === "done" ? status.stages.length : status.state === "running" ? status.stage : 0;
  const line = $(".status", progress);
  if (status.state === "queued") {
    line.textContent = status.ahead ? `Waiting: ${status.ahead} generation${status.ahead > 1 ? "s" : ""} ahead of yours (one runs at a time).` : "Starting…";
  } else if (status.state === "running") {
    line.textContent = `Stage ${status.stage + 1} of ${status.stages.length}: ${STAGE_NAMES[status.stages[status.stage]] || status.stages[status.stage]}…`;
  } else if (status.state === "done") {
    line.textContent = `Done in ${status.result.elapsed.toFixed(1)} s.`;
  } else {
    line.textContent = status.state === "cancelled" ? "Cancelled." : "Failed.";
  }
  showQueue(status.queue);
}

function showQueue(queue) {
  if (!queue) return;
  const text = queue.running ? `busy: 1 generation running, ${queue.waiting} waiting` : "idle";
  $("#queue").textContent = `Queue: ${text}`;
}

function showResult(form, status) {
  const task = form.dataset.task;
  const result = status.result;
  const section = $(".result", form);
  let summary = `${result.summary}: ${result.seconds.toFixed(2)} s.`;
  if (result.prompt_seconds !== null) {
    summary += ` You hear the prompt (0 to ${result.prompt_seconds.toFixed(2)} s), then the continuation.`;
  }
  $(".summary", section).textContent = summary;
  $(".output", section).src = result.audio;
  $(".spectrogram", section).src = result.image;
  const link = $(".download", section);
  link.href = result.audio;
  link.download = `segue-${task}-seed${status.seed}.wav`;
  section.hidden = false;
}

function collect(form) {
  const task = form.dataset.task;
  const data = new FormData(form);
  data.set("task", task);
  for (const fieldset of $$("fieldset.source", form)) {
    const key = fieldset.dataset.input;
    const entry = inputs[task][key];
    if (!entry) {
      if (fieldset.dataset.optional) continue;
      throw new Error(`give the ${fieldset.dataset.label}: upload a file, record one or pick an example`);
    }
    if (info && entry.blob.size > info.max_upload_bytes) {
      throw new Error(`${entry.name}: ${megabytes(entry.blob.size)} is over the limit of ${megabytes(info.max_upload_bytes)}`);
    }
    data.set(key, entry.blob, entry.name);
  }
  return data;
}

async function run(form) {
  const task = form.dataset.task;
  const button = $(".run", form);
  const cancel = $(".cancel", form);
  hideError(form);
  let data;
  try {
    data = collect(form);
  } catch (error) {
    showError(form, error.message);
    return;
  }
  button.disabled = true;
  $(".result", form).hidden = true;
  try {
    let status = await api("/api/jobs", { method: "POST", body: data, headers: { "X-Segue-Client": "page" } });
    running[task] = status.id;
    cancel.hidden = false;
    while (status.state === "queued" || status.state === "running") {
      renderStatus(form, status);
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      status = await api(`/api/jobs/${status.id}`);
    }
    renderStatus(form, status);
    if (status.state === "done") showResult(form, status);
    else showError(form, status.error || status.state);
  } catch (error) {
    showError(form, error.message);
  } finally {
    delete running[task];
    button.disabled = false;
    cancel.hidden = true;
  }
}

// ---- the page
function selectTab(tab) {
  for (const other of $$("[role=tab]")) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    $(`#${other.getAttribute("aria-controls")}`).hidden = !selected;
  }
}

function buildSettings(form) {
  const task = form.dataset.task;
  const holder = $(".settings", form);
  holder.append($("#settings-template").content.cloneNode(true));
  const name = { continue: "Continue", generate: "Generate", resynth: "Resynthesize" }[task];
  const ids = {
    ".run": "run", ".cancel": "cancel", ".error": "error", ".result": "result", ".output": "output",
    ".spectrogram": "spectrogram", ".download": "download", ".progress": "progress",
    "[name=seconds]": "seconds", "[name=acoustic]": "acoustic", "[name=seed]": "seed",
  };
  for (const [selector, id] of Object.entries(ids)) $(selector, form).id = `${task}-${id}`;
  $(".run", form).textContent = name;
  if (holder.dataset.seconds) $("[name=seconds]", form).value = holder.dataset.seconds;
  else $(".seconds", form).remove();
  if (task === "resynth") $(".t-semantic", form).remove();
  const acoustic = $("[name=acoustic]", form);
  acoustic.addEventListener("change", () => {
    for (const label of $$(".t-coarse, .t-fine", form)) {
      $("input", label).disabled = acoustic.value === "soundstorm";
      label.title = acoustic.value === "soundstorm" ? "SoundStorm samples with its own schedule" : "";
    }
  });
  $(".cancel", form).addEventListener("click", () => {
    if (running[task]) fetch(`/api/jobs/${running[task]}/cancel`, { method: "POST" });
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run(form);
  });
}

function applyInfo() {
  $("#model").textContent = `Model: ${info.model}, ${info.sample_rate / 1000} kHz. Prompts up to ${info.max_prompt_seconds} s, `
    + `outputs up to ${info.max_seconds} s, uploads up to ${megabytes(info.max_upload_bytes)}.`;
  showQueue(info.queue);
  for (const form of $$("form.panel")) {
    for (const [stage, value] of Object.entries(info.temperatures)) {
      const input = $(`[name=temperature_${stage}]`, form);
      if (input) input.value = value;
    }
    const seconds = $("[name=seconds]", form);
    if (seconds) seconds.max = info.max_seconds;
    const storm = $("[name=acoustic] option[value=soundstorm]", form);
    storm.disabled = !info.soundstorm;
    if (!info.soundstorm) storm.textContent += " (not in this model)";
  }
  $(".hint-prompt").textContent = `(the model reads up to ${info.max_prompt_seconds} s)`;
  for (const fieldset of $$("fieldset.source")) {
    const holder = $(".examples", fieldset);
    if (!holder) continue;
    for (const example of info.examples) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "example";
      button.id = `${fieldset.closest("form").dataset.task}-example-${example.name}`;
      button.textContent = `Example: ${example.name}`;
      button.title = `${example.title} (${example.seconds} s)`;
      button.addEventListener("click", () => useExample(fieldset, example));
      holder.append(button);
    }
  }
}

function init() {
  for (const tab of $$("[role=tab]")) tab.addEventListener("click", () => selectTab(tab));
  for (const form of $$("form.panel")) buildSettings(form);
  for (const fieldset of $$("fieldset.source")) {
    const file = $("input[type=file]", fieldset);
    file.addEventListener("change", () => {
      if (file.files.length) setInput(fieldset, file.files[0], file.files[0].name);
    });
    $(".record", fieldset).addEventListener("click", (event) => toggleRecording(event.currentTarget));
    const clear = $(".clear", fieldset);
    if (clear) clear.addEventListener("click", () => { file.value = ""; setInput(fieldset, null, ""); });
  }
  window.addEventListener("pagehide", () => {
    for (const id of Object.values(running)) navigator.sendBeacon(`/api/jobs/${id}/cancel`);
  });
  api("/api/info").then((body) => { info = body; applyInfo(); }).catch((error) => {
    $("#model").textContent = `The server did not answer: ${error.message}`;
  });
}

init();

// The chat page of `lmforge serve`: keeps the conversation, sends all of it each turn to /v1/chat/completions as a
// stream (Server-Sent Events) and shows the answer as it arrives; Stop aborts the request, which makes the server
// cancel the generation. Model text is only ever set as textContent, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const conversation = [];  // {role, content}: what the next request sends, all of it
let controller = null;  // the AbortController of the answer streaming now

function addMessage(role, text) {
  $("messages").querySelector(".empty")?.remove();
  const box = document.createElement("div");
  box.className = `msg ${role}`;
  const who = document.createElement("div");
  who.className = "who";
  who.textContent = role === "user" ? "You" : "Model";
  const body = document.createElement("div");
  body.className = "text";
  body.textContent = text;
  const note = document.createElement("div");
  note.className = "note";
  box.append(who, body, note);
  $("messages").append(box);
  box.scrollIntoView({block: "end"});
  return {box, body, note};
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

function setBusy(busy) {
  $("send").disabled = busy;
  $("reset").disabled = busy;
  $("stop").disabled = !busy;
}

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function httpError(reply) {
  // The server answers errors as OpenAI does, {"error": {"message": …}}; something in between may not.
  let detail = reply.statusText;
  try {
    detail = (await reply.json()).error.message;
  } catch { /* not an OpenAI error body: keep the status text */ }
  return new HttpError(reply.status, `HTTP ${reply.status}: ${detail}`);
}

// Each `data:` payload of a Server-Sent Events body, as it arrives.
async function* events(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (line.startsWith("data: ")) yield line.slice("data: ".length);
      }
    }
  }
}

function request(question) {
  const headers = {"Content-Type": "application/json"};
  const key = $("api-key").value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;
  const body = {
    messages: [...conversation, question], stream: true, stream_options: {include_usage: true},
    max_tokens: Number($("max-tokens").value), temperature: Number($("temperature").value),
  };
  return {method: "POST", headers, body: JSON.stringify(body), signal: controller.signal};
}

// Streams the answer into `answer`; returns (finish_reason, usage), "stopped" when the user pressed Stop.
async function stream(question, answer) {
  let finish = null, usage = null;
  try {
    const reply = await fetch("/v1/chat/completions", request(question));
    if (!reply.ok) throw await httpError(reply);
    for await (const data of events(reply.body)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      usage = chunk.usage ?? usage;
      const choice = chunk.choices[0];
      if (choice) {
        answer.body.textContent += choice.delta.content ?? "";
        finish = choice.finish_reason ?? finish;
      }
    }
  } catch (err) {
    if (err.name !== "AbortError") throw err;
    finish = "stopped";
  }
  return {finish, usage};
}

// Under an answer: how it ended (OpenAI's finish_reason in words) and its length.
function note(finish, usage) {
  if (finish === "stopped") return "stopped";
  const parts = usage ? [`${usage.completion_tokens} tokens`] : [];
  if (finish === "length") parts.push("max tokens reached");
  else if (finish !== "stop") parts.push(`finish: ${finish}`);
  return parts.join(" · ");
}

async function send(text) {
  showError("");
  const question = {role: "user", content: text};
  const asked = addMessage("user", text);
  const answer = addMessage("assistant", "");
  answer.box.classList.add("streaming");
  controller = new AbortController();
  setBusy(true);
  try {
    const {finish, usage} = await stream(question, answer);
    const content = answer.body.textContent;
    if (!content.trim()) {
      throw new Error(finish === "stopped" ? "stopped before the first word" : "the answer is empty");
    }
    conversation.push(question, {role: "assistant", content});
    answer.note.textContent = note(finish, usage);
    answer.note.classList.toggle("stopped", finish === "stopped");
  } catch (err) {
    // The turn did not happen: it leaves the conversation, and the question goes back into the box to retry.
    asked.box.remove();
    answer.box.remove();
    $("prompt").value = text;
    showError(err.message);
    if (err.status === 401) $("key-row").hidden = false;
  } finally {
    answer.box.classList.remove("streaming");
    controller = null;
    setBusy(false);
  }
}

async function showModel() {
  try {
    const reply = await fetch("/health");
    if (!reply.ok) throw await httpError(reply);
    const health = await reply.json();
    const parts = [health.model];
    if (health.version) parts.push(`version ${health.version}`);
    if (health.step !== null && health.step !== undefined) parts.push(`step ${health.step}`);
    $("model").textContent = parts.join(" · ");
  } catch (err) {
    $("model").textContent = "model unknown";
    showError(`cannot reach the server: ${err.message}`);
  }
}

$("ask").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || controller) return;
  $("prompt").value = "";
  send(text);
});
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("ask").requestSubmit();
  }
});
$("stop").addEventListener("click", () => controller?.abort());
$("reset").addEventListener("click", () => {
  conversation.length = 0;
  $("messages").replaceChildren();
  showError("");
});
showModel();

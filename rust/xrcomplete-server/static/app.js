// The demo page of `xrcomplete serve`: suggestions on every keystroke, keyboard selection,
// and searches recorded for this page's session so the next suggestions follow from them.
"use strict";

const input = document.getElementById("q");
const list = document.getElementById("suggestions");
const prevOut = document.getElementById("prev");
const tookOut = document.getElementById("took");
const modelOut = document.getElementById("model");
const history = document.getElementById("history");
const errorOut = document.getElementById("error");

function newSessionId() {
  if (window.crypto && crypto.randomUUID) {
    return crypto.randomUUID();
  }
  return "s-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
}

const session = newSessionId();
let suggestions = [];
let selected = -1;
let latest = 0; // the newest request: older answers arriving late are dropped

function showError(message) {
  errorOut.textContent = message;
  errorOut.hidden = !message;
}

function close() {
  list.hidden = true;
  list.replaceChildren();
  input.setAttribute("aria-expanded", "false");
  suggestions = [];
  selected = -1;
}

function render() {
  list.replaceChildren();
  suggestions.forEach((s, i) => {
    const item = document.createElement("li");
    item.setAttribute("role", "option");
    item.setAttribute("aria-selected", String(i === selected));
    item.dataset.text = s.text;
    // highlight counts code points; Array.from splits a string into code points.
    const chars = Array.from(s.text);
    const typed = document.createElement("span");
    typed.className = "typed";
    typed.textContent = chars.slice(s.highlight[0], s.highlight[1]).join("");
    const rest = document.createElement("span");
    rest.className = "rest";
    rest.textContent = chars.slice(s.highlight[1]).join("");
    const text = document.createElement("span");
    text.append(typed, rest);
    const source = document.createElement("span");
    source.className = "source";
    source.textContent = s.source;
    item.append(text, source);
    item.addEventListener("mousedown", (event) => {
      event.preventDefault(); // keep the focus in the box
      search(s.text);
    });
    list.append(item);
  });
  list.hidden = suggestions.length === 0;
  input.setAttribute("aria-expanded", String(!list.hidden));
}

async function suggest() {
  const prefix = input.value;
  const id = ++latest;
  if (!prefix.trim()) {
    close();
    return;
  }
  const url = "v1/complete?" + new URLSearchParams({ prefix, session, k: "10" });
  try {
    const response = await fetch(url);
    const body = await response.json();
    if (id !== latest) {
      return;
    }
    if (!response.ok) {
      showError(body.error ? body.error.message : response.statusText);
      close();
      return;
    }
    showError("");
    suggestions = body.suggestions;
    selected = -1;
    tookOut.textContent = body.took_us + " µs";
    modelOut.textContent = body.model;
    render();
  } catch (err) {
    if (id === latest) {
      showError("no answer from the server: " + err);
    }
  }
}

async function search(text) {
  const query = text.trim();
  if (!query) {
    return;
  }
  close();
  input.value = "";
  try {
    const response = await fetch("v1/searches", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ query, session }),
    });
    const body = await response.json();
    if (!response.ok) {
      showError(body.error ? body.error.message : response.statusText);
      return;
    }
    showError("");
    prevOut.textContent = body.prev;
    const item = document.createElement("li");
    item.textContent = body.prev;
    history.append(item);
  } catch (err) {
    showError("no answer from the server: " + err);
  }
  input.focus();
}

input.addEventListener("input", suggest);
input.addEventListener("keydown", (event) => {
  if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    if (suggestions.length === 0) {
      return;
    }
    event.preventDefault();
    const step = event.key === "ArrowDown" ? 1 : -1;
    selected = (selected + step + suggestions.length + 1) % (suggestions.length + 1);
    if (selected === suggestions.length) {
      selected = -1; // back to what was typed
    }
    render();
  } else if (event.key === "Enter") {
    event.preventDefault();
    search(selected >= 0 ? suggestions[selected].text : input.value);
  } else if (event.key === "Escape") {
    close();
  }
});
input.addEventListener("blur", () => setTimeout(close, 100));

// The BLAST search page: submit jobs, follow them, and show their results.
// Every text from the API or from results goes into the page as text nodes, never as markup.
"use strict";

const API = document.body.dataset.api;
const KEY_STORAGE = "blast-function-key";
const PAGE_SIZE = 100;
const OVERVIEW_HITS = 100;
const JOBS_SHOWN = 20;
const REFRESH_MS = 2000;
const ALIGNMENT_WIDTH = 60;
const JOB_ID = /^[0-9a-f]{19}$/;
const UPLOAD_BLOCK_BYTES = 8 * 1024 * 1024;  // one Put Block of an uploaded query
const SVG_NS = "http://www.w3.org/2000/svg";
// Bit score classes of NCBI's graphic summary, lowest first.
const SCORE_CLASSES = [
  { below: 40, label: "< 40", colour: "#222222" },
  { below: 50, label: "40 – 50", colour: "#1f4fe0" },
  { below: 80, label: "50 – 80", colour: "#2a9d3a" },
  { below: 200, label: "80 – 200", colour: "#c42bc4" },
  { below: Infinity, label: "≥ 200", colour: "#e0242b" },
];
// Labels of the job request's optional fields; a field without one shows its own name.
const OPTION_LABELS = {
  evalue: "E-value threshold",
  max_target_seqs: "Hits per query",
  word_size: "Word size",
  filter: "Low-complexity filter",
};
const COLUMNS = [
  { key: "rank", label: "#", numeric: true, descending: false },
  { key: "subject", label: "Subject", numeric: false, descending: false },
  { key: "description", label: "Description", numeric: false, descending: false },
  { key: "identity", label: "Identity", numeric: true, descending: true },
  { key: "coverage", label: "Query cover", numeric: true, descending: true },
  { key: "evalue", label: "E-value", numeric: true, descending: false },
  { key: "bitScore", label: "Bit score", numeric: true, descending: true },
];

const state = {
  key: "",
  config: null,
  databases: [],
  maxDatabases: 1,
  jobsTimer: 0,
  jobTimer: 0,
  job: null,
  reports: null,
  rows: new Map(),
  query: 0,
  sort: { key: "rank", descending: false },
  page: 0,
  selected: 0,
  picked: new Set(),  // subject ids ticked in the hit table, for their FASTA
  queryUpload: null,  // a query file too large for the form, uploaded on submit
  partialShown: "",  // job id and batches done of the hits so far shown
};

// DOM helpers

const $ = (id) => document.getElementById(id);

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  node.append(...children);
  return node;
}

function setText(id, text) {
  $(id).textContent = text;
}

// The function key: from the page's URL (?code=) or asked for once; kept for the session.

function takeKeyFromUrl() {
  const url = new URL(window.location.href);
  const code = url.searchParams.get("code");
  if (code) {
    sessionStorage.setItem(KEY_STORAGE, code);
    url.searchParams.delete("code");
    window.history.replaceState(null, "", url);
  }
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

let keyPrompt = null;

function askForKey(message) {
  if (!keyPrompt) {
    keyPrompt = new Promise((resolve) => {
      const dialog = $("key-dialog");
      const form = $("key-form");
      const finish = (entered) => {
        form.removeEventListener("submit", onSubmit);
        $("key-cancel").removeEventListener("click", onCancel);
        dialog.removeEventListener("cancel", onCancel);
        if (dialog.open) dialog.close();
        keyPrompt = null;
        resolve(entered);
      };
      const onSubmit = (event) => {
        event.preventDefault();
        const key = $("key-input").value.trim();
        if (!key) return;
        state.key = key;
        sessionStorage.setItem(KEY_STORAGE, key);
        finish(true);
      };
      const onCancel = (event) => {
        event.preventDefault();
        finish(false);
      };
      form.addEventListener("submit", onSubmit);
      $("key-cancel").addEventListener("click", onCancel);
      dialog.addEventListener("cancel", onCancel);
      setText("key-message", message);
      $("key-input").value = "";
      dialog.showModal();
    });
  }
  return keyPrompt;
}

// The API

class ApiFailure extends Error {
  constructor(status, detail, errors = [], problem = {}) {
    super(detail);
    this.status = status;
    this.errors = errors;
    this.problem = problem;  // the whole problem document, with members such as expired_at
  }
}

async function api(path, options = {}) {
  for (;;) {
    const headers = new Headers(options.headers || {});
    if (state.key) headers.set("x-functions-key", state.key);
    const response = await fetch(API + path, { ...options, headers });
    if (response.status !== 401) return response;
    const message = state.key
      ? "The service refused this key. Enter a valid function key."
      : "This service needs a function key (in Azure: a function or host key of the app).";
    if (!(await askForKey(message))) {
      throw new ApiFailure(401, "a function key is needed; use “Function key…” to enter one");
    }
  }
}

async function failure(response) {
  let detail = `${response.status} ${response.statusText}`;
  let errors = [];
  let problem = {};
  try {
    problem = await response.json();
    if (typeof problem.detail === "string") detail = problem.detail;
    if (Array.isArray(problem.errors)) errors = problem.errors;
  } catch {
    // Not a problem document: the status line says enough.
  }
  return new ApiFailure(response.status, detail, errors, problem || {});
}

// A job past the retention period answers 410 Gone, with when it expired.
function expiredMessage(error) {
  const when = error.problem.expired_at ? ` on ${formatTime(error.problem.expired_at)}` : "";
  return `This job has expired${when}: jobs are deleted with their results after the `
    + "retention period. Submit the search again to get its results.";
}

async function apiJson(path, options) {
  const response = await api(path, options);
  if (!response.ok) throw await failure(response);
  return response.json();
}

// A job's JSON result. A worker makes each format when it is first asked for: meanwhile the
// API answers 202 with Retry-After. A result too large to pass through the service answers a
// redirect to Blob storage, which this page does not follow (its downloads do).
const RESULT_WAIT_MS = 10 * 60 * 1000;

async function resultJson(id) {
  const started = Date.now();
  for (;;) {
    const response = await api(`/jobs/${id}/results?format=json`, { redirect: "manual" });
    if (response.type === "opaqueredirect") {
      throw new ApiFailure(302, "the results are too large to show on this page; use the "
        + "download links");
    }
    if (response.status !== 202) {
      if (!response.ok) throw await failure(response);
      return response.json();
    }
    if (Date.now() - started > RESULT_WAIT_MS) {
      throw new ApiFailure(202, "the results are still being prepared; reload the page later");
    }
    showStatus("Preparing the results…");
    const seconds = Number(response.headers.get("Retry-After")) || 2;
    await new Promise((resolve) => { window.setTimeout(resolve, seconds * 1000); });
  }
}

// One query's search: `search` against databases; against subject sequences BLAST+ writes
// `bl2seq`, a list of searches of that query, whose hits are shown together.
function querySearch(results) {
  if (!results.bl2seq) return results.search;
  const [first, ...others] = results.bl2seq;
  return { ...first, hits: [first, ...others].flatMap((search) => search.hits || []) };
}

function showStatus(message, isError = false) {
  const status = $("status");
  status.textContent = message;
  status.classList.toggle("error", isError);
}

// Formatting

const integer = new Intl.NumberFormat("en");

function formatLetters(count, molecule) {
  const unit = molecule === "protein" ? "residues" : "bases";
  for (const [size, prefix] of [[1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
    if (count >= size) return `${(count / size).toFixed(1)} ${prefix}${unit}`;
  }
  return `${count} ${unit}`;
}

function formatEvalue(value) {
  if (value === 0) return "0.0";
  if (value < 1e-3) return value.toExponential(0);
  return String(Number(value.toPrecision(2)));
}

function formatTime(iso) {
  return iso ? new Date(iso).toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" }) : "";
}

function formatSeconds(seconds) {
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${Math.round(seconds - minutes * 60)} s`;
}

function duration(job) {
  if (!job.started_at) return "";
  const end = job.finished_at ? new Date(job.finished_at) : new Date();
  return formatSeconds((end - new Date(job.started_at)) / 1000);
}

// Batches done of a big job's batches, while it runs ("" for a one-batch job).
function progress(job) {
  if (!(job.batches > 1) || job.status !== "running") return "";
  return ` · ${job.batches_done}/${job.batches} batches, ${job.queries_done}/${job.queries} queries`;
}

// The statuses come from the API (GET ui/config): after a final one nothing changes.
function isActive(job) {
  return !state.config.statuses.final.includes(job.status);
}

// The databases a job searched: `databases` (a list), or `database` (names joined by spaces).
function jobDatabases(job) {
  return Array.isArray(job.databases) ? job.databases : String(job.database || "").split(/\s+/);
}

// What a job searched, in words: its databases, or its own subject sequences.
function jobTarget(job) {
  if (job.subjects) {
    return `${integer.format(job.subjects)} subject ${job.subjects === 1 ? "sequence" : "sequences"}`;
  }
  return jobDatabases(job).join(", ");
}

function searchesSubject() {
  return $("target-subject").checked;
}

function targetChanged() {
  $("database-target").hidden = searchesSubject();
  $("subject-target").hidden = !searchesSubject();
  fillPrograms();
}

function statusBadge(job) {
  const known = state.config.statuses.all.includes(job.status) ? job.status : "unknown";
  const text = job.status === "running" ? `running ${duration(job)}${progress(job)}` : job.status;
  const badge = el("span", { class: `badge status-${known}` }, text);
  if (job.error) badge.title = job.error;
  return badge;
}

// The submit form and its checks, with the API's limits (GET ui/config)

function fillSelect(select, options, chosen) {
  select.replaceChildren(...options.map(({ value, label, disabled }) => {
    const option = el("option", { value }, label);
    option.disabled = Boolean(disabled);
    return option;
  }));
  if (chosen !== undefined && options.some((o) => o.value === chosen && !o.disabled)) {
    select.value = chosen;
  } else {
    const first = options.find((o) => !o.disabled);
    if (first) select.value = first.value;
  }
}

// The program decides the databases offered: those of the molecule it searches. A program with
// no such database cannot be chosen, unless it searches subject sequences.
function fillPrograms() {
  const molecules = new Set(state.databases.map((d) => d.molecule));
  const programs = Object.entries(state.config.programs);
  fillSelect($("field-program"), programs.map(([name, program]) => ({
    value: name,
    label: name,
    disabled: !searchesSubject() && !molecules.has(program.database_molecule),
  })), $("field-program").value || state.config.default_program);
  if (!programs.some(([, program]) => molecules.has(program.database_molecule))) {
    showFieldErrors([{ field: "database", reason: "no database is available" }]);
  }
  programChanged();
}

function programChanged() {
  fillTasks();
  fillDatabases();
}

function programMolecule() {
  return state.config.programs[$("field-program").value]?.database_molecule;
}

// A checkbox per database of the program's molecule; those chosen before stay chosen. A single
// database is chosen for the user, never one of several (a click adds to, not replaces, the choice).
function fillDatabases() {
  const list = $("field-database");
  const chosen = new Set(chosenDatabases());
  const usable = state.databases.filter((d) => d.molecule === programMolecule());
  list.replaceChildren(...usable.map((d, index) => {
    const box = el("input", { type: "checkbox", name: "database", value: d.name, id: `database-${index}` });
    box.checked = chosen.has(d.name) || usable.length === 1;
    return el("label", { for: box.id }, box, el("span", {}, el("span", { class: "mono" }, d.name),
      el("span", { class: "choice-detail" }, ` ${d.title} (${integer.format(d.sequences)} sequences, `
        + `${formatLetters(d.letters, d.molecule)})`)));
  }));
  if (!usable.length) {
    list.append(el("p", { class: "quiet" }, `No ${programMolecule() || ""} database is available.`));
  }
  databasesChanged();
}

function chosenDatabases() {
  return [...$("field-database").querySelectorAll("input:checked")].map((box) => box.value);
}

// At most max_per_search databases: once that many are chosen, the others cannot be.
function databasesChanged() {
  const count = chosenDatabases().length;
  const full = count >= state.maxDatabases;
  for (const box of $("field-database").querySelectorAll("input")) box.disabled = full && !box.checked;
  const together = state.maxDatabases > 1
    ? `choose up to ${state.maxDatabases}; several are searched together as one database` : "choose one";
  setText("database-hint", count ? `${count} chosen (${together})` : together.replace(/^c/, "C"));
}

function fillTasks() {
  const program = state.config.programs[$("field-program").value];
  if (!program) return;
  fillSelect($("field-task"), program.tasks.map((task) => ({ value: task, label: task })),
    program.default_task);
}

function parseFasta(text) {
  const sequences = [];
  let current = null;
  for (const raw of text.split(/\r\n|\r|\n/)) {
    const line = raw.trim();
    if (line.startsWith(">")) {
      const header = line.slice(1).replace(/[\x00-\x1f\x7f-\x9f\u2028\u2029]/g, " ").trim();
      current = { header, residues: [] };
      sequences.push(current);
    } else if (line && !line.startsWith(";")) {
      if (!current) {
        current = { header: "", residues: [] };
        sequences.push(current);
      }
      current.residues.push(line.replace(/\s+/g, "").toUpperCase());
    }
  }
  return sequences.map((s) => ({
    header: s.header, id: s.header.split(/\s+/)[0], residues: s.residues.join(""),
  }));
}

function showLetters(letters) {
  return [...letters].sort().slice(0, 10).map((c) => `'${c}'`).join(" ");
}

// What fasta.validate checks of a query or subject, in the same words; the API decides the
// rest (e.g. protein-like sequences for a nucleotide program) and its message is shown the
// same way.
function checkFasta(text, molecule, limits = state.config.query) {
  const size = new TextEncoder().encode(text).length;
  if (size > limits.max_bytes) return `is ${size} bytes; the limit is ${limits.max_bytes}`;
  const sequences = parseFasta(text);
  if (!sequences.length) return text.trim() ? "holds no sequence" : "must not be empty";
  if (sequences.length > limits.max_sequences) {
    return `holds ${sequences.length} sequences; the limit is ${limits.max_sequences}`;
  }
  const alphabets = state.config.alphabets;
  const allowed = new Set(molecule === "nucleotide"
    ? alphabets.nucleotide + alphabets.protein : alphabets.protein);
  for (const [index, sequence] of sequences.entries()) {
    const id = sequence.id.length > 40 ? `${sequence.id.slice(0, 37)}...` : sequence.id;
    const name = `sequence ${index + 1}${id ? ` (${id})` : ""}`;
    if (sequence.header.length > limits.max_header_chars) {
      return `${name}: header has ${sequence.header.length} characters; the limit is ${limits.max_header_chars}`;
    }
    if (!sequence.residues) return `${name} is empty`;
    if (sequence.residues.length > limits.max_letters) {
      return `${name} has ${sequence.residues.length} letters; the limit is ${limits.max_letters}`;
    }
    const foreign = new Set([...sequence.residues].filter((c) => !allowed.has(c)));
    if (foreign.size) {
      return molecule === "nucleotide"
        ? `${name} has characters that are not sequence letters: ${showLetters(foreign)}`
        : `${name} has characters outside the protein alphabet: ${showLetters(foreign)}`;
    }
  }
  return "";
}

function optionLabel(name) {
  return OPTION_LABELS[name] || name.replace(/_/g, " ");
}

// A control for each optional field of the job request, from its JSON Schema.
function buildOptions() {
  $("options").replaceChildren(...Object.entries(state.config.options).map(([name, rule]) => {
    const id = `field-${name}`;
    let control;
    if (rule.enum) {
      const fallback = rule.default === undefined ? "default" : `default (${rule.default})`;
      control = el("select", { id, name }, el("option", { value: "" }, fallback),
        ...rule.enum.map((choice) => el("option", { value: String(choice) }, String(choice))));
    } else {
      control = el("input", {
        id, name, type: "text", autocomplete: "off",
        inputmode: rule.type === "integer" ? "numeric" : "decimal",
        placeholder: rule.default === undefined ? "the task's default" : "",
      });
      if (rule.default !== undefined) control.value = String(rule.default);
    }
    control.setAttribute("aria-describedby", `error-${name}`);
    if (rule.description) control.title = rule.description;
    return el("div", { class: "field" }, el("label", { for: id }, optionLabel(name)), control,
      el("p", { class: "field-error", id: `error-${name}`, role: "alert" }));
  }));
}

// The words of jobs._reason for a number outside its JSON Schema range.
function checkNumber(text, rule) {
  const value = Number(text);
  if (!Number.isFinite(value) || (rule.type === "integer" && !Number.isInteger(value))) {
    const kind = rule.type === "integer" ? "a whole number" : "a number";
    return { error: `must be ${kind}, not ${JSON.stringify(text)}` };
  }
  const low = "minimum" in rule ? rule.minimum : rule.exclusiveMinimum;
  const tooLow = "minimum" in rule ? value < low : value <= low;
  if (tooLow || value > rule.maximum) {
    const lowText = "minimum" in rule ? `at least ${low}` : `above ${low}`;
    return { error: `must be ${lowText} and at most ${rule.maximum}, not ${text}` };
  }
  return { value };
}

function readForm() {
  const program = $("field-program").value;
  const payload = {
    query: $("field-query").value,
    program,
    task: $("field-task").value,
  };
  const errors = [];
  const molecule = state.config.programs[program]?.query_molecule || "nucleotide";
  if (state.queryUpload) {
    delete payload.query;  // the file goes to Blob storage; a worker checks it
  } else {
    const queryError = checkFasta(payload.query, molecule);
    if (queryError) errors.push({ field: "query", reason: queryError });
  }
  if (searchesSubject()) {
    payload.subject = $("field-subject").value;
    const subjectError = checkFasta(payload.subject, programMolecule(), state.config.subject);
    if (subjectError) errors.push({ field: "subject", reason: subjectError });
  } else {
    const databases = chosenDatabases();
    if (!databases.length) {
      errors.push({ field: "database", reason: "choose at least one database" });
    } else if (databases.length > state.maxDatabases) {
      errors.push({ field: "database", reason: `choose at most ${state.maxDatabases} databases` });
    }
    // One database is sent as its name, several as a list.
    payload.database = databases.length === 1 ? databases[0] : databases;
  }
  for (const [name, rule] of Object.entries(state.config.options)) {
    const text = $(`field-${name}`).value.trim();
    if (!text) continue;
    if (rule.enum) {
      payload[name] = rule.enum.find((choice) => String(choice) === text);
    } else if (rule.type === "number" || rule.type === "integer") {
      const checked = checkNumber(text, rule);
      if (checked.error) errors.push({ field: name, reason: checked.error });
      else payload[name] = checked.value;
    } else {
      payload[name] = text;
    }
  }
  return { payload, errors };
}

function clearErrors() {
  for (const node of document.querySelectorAll(".field-error, #form-error")) node.textContent = "";
  for (const node of document.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
}

// Shows each error next to its field; returns those that name no field of the form.
function showFieldErrors(errors) {
  const unplaced = [];
  for (const { field, reason } of errors) {
    const slot = $(`error-${field}`);
    if (!slot) {
      unplaced.push({ field, reason });
      continue;
    }
    slot.textContent = slot.textContent ? `${slot.textContent}; ${reason}` : reason;
    $(`field-${field}`).setAttribute("aria-invalid", "true");
  }
  return unplaced;
}

async function submitForm(event) {
  event.preventDefault();
  clearErrors();
  const { payload, errors } = readForm();
  if (errors.length) {
    showFieldErrors(errors);
    return;
  }
  const button = $("submit-button");
  button.disabled = true;
  try {
    if (state.queryUpload) payload.query_upload = await uploadQuery(state.queryUpload);
    const job = await apiJson("/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(payload),
    });
    window.location.hash = `job=${job.id}`;
    refreshJobs();
  } catch (error) {
    const unplaced = error instanceof ApiFailure ? showFieldErrors(error.errors) : [];
    if (!(error instanceof ApiFailure) || unplaced.length || !error.errors.length) {
      setText("form-error", error.message);
    }
  } finally {
    button.disabled = false;
  }
}

// A FASTA file picked for the query or the subject, checked against that field's limit. A query
// file above config.upload.above_bytes is not read here: it is uploaded on submit.
async function readFile(field) {
  const file = $(`${field}-file`).files[0];
  if (field === "query") pickUpload(null);
  if (!file) return;
  clearErrors();
  if (field === "query" && file.size > state.config.upload.above_bytes) {
    const most = state.config.upload.max_bytes;
    if (file.size > most) {
      showFieldErrors([{ field, reason: `${file.name} is ${file.size} bytes; the limit is ${most}` }]);
    } else {
      pickUpload(file);
    }
    return;
  }
  const limit = state.config ? state.config[field].max_bytes : Infinity;
  if (file.size > limit) {
    showFieldErrors([{ field, reason: `${file.name} is ${file.size} bytes; the limit is ${limit}` }]);
    return;
  }
  $(`field-${field}`).value = await file.text();
}

// A query file sent straight to Blob storage on submit (null: the text box is the query).
function pickUpload(file) {
  state.queryUpload = file;
  $("field-query").disabled = Boolean(file);
  if (file) $("field-query").value = "";
  setText("upload-note", file ? `${file.name} (${megabytes(file.size)}) will be uploaded on `
    + "submit, then checked and split into batches by a worker." : "");
  $("upload-progress").hidden = true;
}

// The file uploaded block by block to the write-only link that POST /uploads gives (Put Block,
// then Put Block List), with its progress shown; the upload's id, for the job's query_upload.
async function uploadQuery(file) {
  const link = await apiJson("/uploads", { method: "POST" });
  const progress = $("upload-progress");
  Object.assign(progress, { hidden: false, max: file.size, value: 0 });
  const blocks = [];
  for (let start = 0; start < file.size; start += UPLOAD_BLOCK_BYTES) {
    const id = btoa(String(blocks.length).padStart(8, "0"));
    await putToStorage(`${link.url}&comp=block&blockid=${encodeURIComponent(id)}`,
      file.slice(start, start + UPLOAD_BLOCK_BYTES));
    blocks.push(id);
    progress.value = Math.min(file.size, start + UPLOAD_BLOCK_BYTES);
    setText("upload-note", `${megabytes(progress.value)} of ${megabytes(file.size)} uploaded`);
  }
  const listed = blocks.map((id) => `<Latest>${id}</Latest>`).join("");
  await putToStorage(`${link.url}&comp=blocklist`,
    `<?xml version="1.0" encoding="utf-8"?><BlockList>${listed}</BlockList>`, "application/xml");
  setText("upload-note", `${file.name} uploaded; submitting`);
  return link.upload_id;
}

// One PUT to Blob storage. Its errors never show the link: its signature is a secret.
async function putToStorage(url, body, type) {
  let response;
  try {
    response = await fetch(url, { method: "PUT", body, headers: type ? { "Content-Type": type } : {} });
  } catch {
    throw new Error("the upload to storage failed: no answer");
  }
  if (!response.ok) {
    const code = response.headers.get("x-ms-error-code") || response.statusText;
    throw new Error(`storage refused the upload: ${response.status} ${code}`);
  }
}

function megabytes(bytes) {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

// Recent jobs, refreshed while any is queued or running

async function refreshJobs() {
  window.clearTimeout(state.jobsTimer);
  let jobs;
  try {
    jobs = (await apiJson(`/jobs?limit=${JOBS_SHOWN}`)).jobs;
  } catch (error) {
    showStatus(`Recent jobs: ${error.message}`, true);
    return;
  }
  showStatus("");
  const current = state.job ? state.job.id : "";
  $("jobs").tBodies[0].replaceChildren(...jobs.map((job) => {
    const row = el("tr", {},
      el("td", {}, el("a", { href: `#job=${job.id}`, class: "mono" }, job.id),
        el("span", { class: "when" }, formatTime(job.submitted_at))),
      el("td", {}, jobTarget(job)),
      el("td", {}, `${job.program} / ${job.task}`),
      el("td", { class: "num" }, integer.format(job.queries)),
      el("td", {}, statusBadge(job)),
      el("td", { class: "num" }, job.hits === null ? "" : integer.format(job.hits)));
    if (job.id === current) row.classList.add("current");
    return row;
  }));
  $("jobs-empty").hidden = jobs.length > 0;
  if (jobs.some(isActive)) {
    state.jobsTimer = window.setTimeout(refreshJobs, REFRESH_MS);
  }
}

// One job: its record, then its results once it has succeeded

function route() {
  if (!state.config) return;
  const params = new URLSearchParams(window.location.hash.slice(1));
  const id = params.get("job") || "";
  if (!JOB_ID.test(id)) {
    $("job-view").hidden = true;
    return;
  }
  const query = Math.max(0, (Number.parseInt(params.get("query"), 10) || 1) - 1);
  if (state.job && state.job.id === id && state.reports) {
    showQuery(Math.min(query, state.reports.length - 1));
  } else {
    loadJob(id, query);
  }
}

async function loadJob(id, query) {
  window.clearTimeout(state.jobTimer);
  if (!state.job || state.job.id !== id) {
    state.job = null;
    state.reports = null;
    state.rows = new Map();
    state.query = -1;
    state.picked.clear();
    $("picked").hidden = true;
    $("results").hidden = true;
    $("downloads").hidden = true;
    $("partial").hidden = true;
    $("partial-hits").replaceChildren();
    $("job-actions").hidden = true;
    showJobNotice("");
  }
  $("job-view").hidden = false;
  setText("job-heading", `Job ${id}`);
  let job;
  try {
    job = await apiJson(`/jobs/${id}`);
  } catch (error) {
    if (currentJobId() !== id) return;
    setText("job-summary", "");
    $("job-actions").hidden = true;
    $("results").hidden = true;
    $("downloads").hidden = true;
    showJobError(error.status === 410 ? expiredMessage(error) : error.message);
    return;
  }
  if (currentJobId() !== id) return;
  state.job = job;
  showJob(job);
  if (isActive(job)) {
    state.jobTimer = window.setTimeout(() => loadJob(id, query), REFRESH_MS / 2);
    return;
  }
  if (job.status !== "succeeded") return;
  showDownloads(job);
  try {
    const report = await resultJson(id);
    if (currentJobId() !== id) return;
    showStatus("");
    state.reports = report.BlastOutput2.map((entry) => querySearch(entry.report.results));
  } catch (error) {
    showJobError(error.status === 410 ? expiredMessage(error)
      : `The results cannot be read: ${error.message}`);
    return;
  }
  fillQuerySelect();
  $("results").hidden = false;
  showQuery(Math.min(query, state.reports.length - 1));
}

function showJob(job) {
  showJobSummary(job);
  showPartial(job);
  showJobError(job.error || "");
  $("job-actions").hidden = !isActive(job);
  $("job-cancel").disabled = false;
  for (const row of $("jobs").tBodies[0].rows) {
    row.classList.toggle("current", row.cells[0].firstChild.textContent === job.id);
  }
}

// Cancel the job shown: DELETE answers the cancelled job, or 409 if it ended meanwhile.
async function cancelJob() {
  const job = state.job;
  if (!job || !isActive(job)) return;
  const id = job.id;
  window.clearTimeout(state.jobTimer);
  $("job-cancel").disabled = true;
  showJobNotice("Cancelling…");
  let cancelled = null;
  let message = "";
  try {
    cancelled = await apiJson(`/jobs/${id}`, { method: "DELETE" });
  } catch (error) {
    if (error.status === 409) {
      const status = error.problem.job_status;
      message = `The job was not cancelled: it had already ended${status ? ` (${status})` : ""}.`;
    } else if (error.status === 410) {
      message = expiredMessage(error);
    } else {
      message = `The job could not be cancelled: ${error.message}`;
    }
  }
  refreshJobs();
  if (currentJobId() !== id) return;
  if (cancelled) {
    state.job = cancelled;
    showJob(cancelled);
    showJobNotice(`Cancelled ${formatTime(cancelled.finished_at)}; the search was stopped `
      + "and the job keeps no results.");
    return;
  }
  showJobNotice(message);
  loadJob(id, Math.max(0, state.query));  // shows what the job is now (a 410: the expiry)
}

function showJobNotice(message) {
  $("job-notice").hidden = !message;
  setText("job-notice", message);
}

function currentJobId() {
  return new URLSearchParams(window.location.hash.slice(1)).get("job") || "";
}

function showJobError(message) {
  $("job-error").hidden = !message;
  setText("job-error", message);
}

function showJobSummary(job) {
  const databases = jobDatabases(job);
  const parts = [
    statusBadge(job),
    job.subjects ? " " : ` ${databases.length === 1 ? "database" : "databases"} `,
    el("span", { class: "job-databases" }, jobTarget(job)),
    ` · ${job.program} / ${job.task} · `
      + (job.status === "validating" ? `a ${megabytes(job.upload_bytes)} upload being checked `
        + `(${Math.floor((100 * job.upload_checked) / Math.max(job.upload_bytes, 1))}%)`
        : `${integer.format(job.queries)} ${job.queries === 1 ? "query" : "queries"} `
          + `(${integer.format(job.query_letters)} letters)`),
  ];
  for (const name of Object.keys(state.config.options)) {
    if (job[name] !== null && job[name] !== undefined) parts.push(` · ${optionLabel(name)} ${job[name]}`);
  }
  if (job.hits !== null) parts.push(` · ${integer.format(job.hits)} hits`);
  parts.push(` · submitted ${formatTime(job.submitted_at)}`);
  if (job.finished_at) parts.push(` · took ${duration(job)}`);
  const run = job.summary;  // the run summary: BLAST's CPU time and what it cost
  if (run && run.cpu_seconds > 0) {
    const rate = run.letters_per_cpu_second
      ? ` (${integer.format(Math.round(run.letters_per_cpu_second))} letters per CPU s)` : "";
    parts.push(` · BLAST ${run.cpu_seconds.toFixed(2)} CPU s${rate}`
      + ` · estimated cost ${run.estimated_cost.toPrecision(2)}`);
  }
  const times = job.timings;  // where the time went, summed over batches (stopped ones too)
  if (times && times.total !== null) {
    parts.push(` · time: queued ${formatSeconds(times.queued)}, BLAST ${formatSeconds(times.blast)}`
      + `, transfer ${formatSeconds(times.transfer)}, staging ${formatSeconds(times.staging)}`
      + `, formatting ${formatSeconds(times.format)}`);
  }
  if (job.expires_at) {  // null: kept forever
    const kept = job.status === "succeeded" ? "results kept until " : "job kept until ";
    parts.push(" · ", el("span", { class: "job-expiry" }, kept,
      el("time", { datetime: job.expires_at }, formatTime(job.expires_at))));
  }
  $("job-summary").replaceChildren(...parts);
}

function showDownloads(job) {
  const links = Object.keys(job.results).filter((f) => f in state.config.formats).map((format) => {
    const filename = `${job.id}.${state.config.formats[format]}`;
    // wait: a worker makes a format when first asked for; a link cannot ask again.
    const link = el("a", {
      href: `${API}/jobs/${job.id}/results?format=${encodeURIComponent(format)}&wait=60`,
      download: filename,
      "data-format": format,
    }, format.toUpperCase());
    link.addEventListener("click", (event) => {
      if (!state.key) return;
      event.preventDefault();
      downloadWithKey(link.getAttribute("href"), filename);
    });
    return link;
  });
  $("downloads").replaceChildren("Download: ", ...links.flatMap((link, i) => (i ? [" · ", link] : [link])));
  if (job.results.tsv) $("downloads").append(" · ", columnPicker(job));
  $("downloads").hidden = false;
}

// A running (or failed) job of several batches: the hits of the batches searched so far.
function showPartial(job) {
  const shown = Boolean(job.partial_results) && job.batches_done > 0
    && (isActive(job) || job.status === "failed");
  $("partial").hidden = !shown;
  if (!shown) return;
  const filename = `${job.id}.partial.tsv`;
  const link = el("a", { href: `${API}/jobs/${job.id}/partial.tsv`, download: filename },
    "Download TSV so far");
  link.addEventListener("click", (event) => {
    if (!state.key) return;
    event.preventDefault();
    downloadWithKey(link.getAttribute("href"), filename);
  });
  $("partial-line").replaceChildren(`Results so far: ${integer.format(job.queries_done)} of `
    + `${integer.format(job.queries)} queries searched (${job.batches_done} of ${job.batches} `
    + `batches), ${integer.format(job.hits || 0)} hits. `, link);
  showPartialHits(job);
}

// The first hits so far in a table, read from the start of partial.tsv each time another batch
// is done; the rest of it is not fetched.
const PARTIAL_ROWS = 20;
const PARTIAL_COLUMNS = { 0: "Query", 1: "Subject", 2: "% identity", 3: "Length", 10: "E-value",
  11: "Bit score" };

async function showPartialHits(job) {
  const shown = `${job.id}:${job.batches_done}`;
  if (state.partialShown === shown) return;
  state.partialShown = shown;
  let rows;
  try {
    rows = await firstLines(await api(`/jobs/${job.id}/partial.tsv`), PARTIAL_ROWS);
  } catch {
    return;  // the counts and the download above still say what there is
  }
  if (state.partialShown !== shown || currentJobId() !== job.id) return;
  const columns = Object.keys(PARTIAL_COLUMNS);
  const table = el("table", { class: "grid" },
    el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", {}, PARTIAL_COLUMNS[c])))),
    el("tbody", {}, ...rows.map((line) => {
      const cells = line.split("\t");
      return el("tr", {}, ...columns.map((c) => el("td", {}, cells[c] ?? "")));
    })));
  $("partial-hits").replaceChildren(el("p", { class: "quiet" }, rows.length
    ? `The first ${rows.length} hits so far:` : "No hits so far."), ...(rows.length ? [table] : []));
}

// Up to `count` lines of a response, reading no further than they need.
async function firstLines(response, count) {
  if (!response.ok) throw await failure(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  while (text.split("\n").length <= count) {
    const { done, value } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
  }
  reader.cancel();
  return text.split("\n").filter(Boolean).slice(0, count);
}

// A TSV of the columns ticked, in the order listed (the 12 standard ones first, as in the
// plain TSV): a worker makes each set of columns once, from the job's archive.
function columnPicker(job) {
  const boxes = state.config.columns.map((column) => el("input", {
    type: "checkbox", value: column.name, ...(column.default ? { checked: "" } : {}),
  }));
  const link = el("a", { download: `${job.id}.tsv`, id: "columns-download" }, "Download TSV");
  const update = () => {
    const chosen = boxes.filter((box) => box.checked).map((box) => box.value);
    link.setAttribute("href", `${API}/jobs/${job.id}/results?format=tsv`
      + `&columns=${encodeURIComponent(chosen.join(","))}&wait=60`);
    link.toggleAttribute("aria-disabled", chosen.length === 0);
    link.dataset.columns = chosen.join(",");
  };
  boxes.forEach((box) => box.addEventListener("change", update));
  update();
  link.addEventListener("click", (event) => {
    if (!link.dataset.columns) { event.preventDefault(); return; }
    if (!state.key) return;
    event.preventDefault();
    downloadWithKey(link.getAttribute("href"), `${job.id}.tsv`);
  });
  const choices = state.config.columns.map((column, index) => el("label", {
    class: "column-choice", title: column.meaning }, boxes[index], ` ${column.name}`));
  return el("details", { class: "column-picker", id: "columns-picker" },
    el("summary", {}, "TSV with chosen columns"),
    el("div", { class: "column-choices" }, ...choices),
    link);
}

// A plain link cannot carry the key header: fetch the file, then save it from memory.
async function downloadWithKey(href, filename) {
  try {
    const response = await api(href.slice(API.length));
    if (response.status === 202) {
      throw new ApiFailure(202, "the file is still being prepared; try again in a minute");
    }
    if (!response.ok) throw await failure(response);
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: filename });
    document.body.append(link);
    link.click();
    link.remove();
    window.setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    showJobError(error.status === 410 ? expiredMessage(error) : `Download failed: ${error.message}`);
  }
}

// Results of one query: overview, hit table, alignments

function fillQuerySelect() {
  fillSelect($("query-select"), state.reports.map((search, index) => ({
    value: String(index),
    label: `${index + 1}. ${search.query_title || search.query_id} `
      + `(${integer.format(search.query_len)} letters, ${integer.format((search.hits || []).length)} hits)`,
  })));
  $("query-nav").hidden = state.reports.length < 2;
}

function goToQuery(index) {
  if (!state.reports || index < 0 || index >= state.reports.length) return;
  window.location.hash = `job=${state.job.id}&query=${index + 1}`;
}

function subjectNames(description) {
  const title = description.title || "";
  // Databases made without -parse_seqids have ordinal ids: name the subject as BLAST's
  // tabular output does, by the first word of its title.
  if (!description.id || description.id.startsWith("gnl|BL_ORD_ID|")) {
    const space = title.search(/\s/);
    return space < 0 ? [title, ""] : [title.slice(0, space), title.slice(space + 1).trim()];
  }
  return [description.accession || description.id, title];
}

function coveredLength(hsps) {
  const ranges = hsps.map((h) => [Math.min(h.query_from, h.query_to), Math.max(h.query_from, h.query_to)])
    .sort((a, b) => a[0] - b[0]);
  let covered = 0;
  let end = 0;
  for (const [from, to] of ranges) {
    if (to > end) {
      covered += to - Math.max(from, end + 1) + 1;
      end = to;
    }
  }
  return covered;
}

function hitRows(index) {
  if (!state.rows.has(index)) {
    const search = state.reports[index];
    state.rows.set(index, (search.hits || []).map((hit, position) => {
      const [subject, description] = subjectNames(hit.description[0] || {});
      const best = hit.hsps.reduce((a, b) => (b.bit_score > a.bit_score ? b : a));
      return {
        rank: position + 1,
        hit,
        subject,
        description,
        identity: (100 * best.identity) / best.align_len,
        coverage: (100 * coveredLength(hit.hsps)) / search.query_len,
        evalue: Math.min(...hit.hsps.map((h) => h.evalue)),
        bitScore: best.bit_score,
      };
    }));
  }
  return state.rows.get(index);
}

function showQuery(index) {
  if (index !== state.query) {
    state.sort = { key: "rank", descending: false };
    state.page = 0;
    state.selected = hitRows(index).length ? 1 : 0;
  }
  state.query = index;
  const search = state.reports[index];
  $("query-select").value = String(index);
  $("query-prev").disabled = index === 0;
  $("query-next").disabled = index === state.reports.length - 1;
  setText("query-title", `Query ${index + 1} of ${state.reports.length}: `
    + `${search.query_title || search.query_id} (${integer.format(search.query_len)} letters)`);
  drawOverview(search, hitRows(index));
  drawTable();
  drawAlignment();
}

function scoreClass(bitScore) {
  return SCORE_CLASSES.find((c) => bitScore < c.below);
}

function niceStep(length) {
  const rough = length / 10;
  const power = 10 ** Math.floor(Math.log10(rough));
  return [1, 2, 5, 10].map((m) => m * power).find((step) => step >= rough) || power * 10;
}

function drawOverview(search, rows) {
  const width = Math.max(480, Math.floor($("overview").getBoundingClientRect().width));
  const left = 16;
  const right = 16;
  const span = width - left - right;
  const length = Math.max(1, search.query_len);
  const x = (position) => left + ((position - 1) / length) * span;
  const shown = rows.slice(0, OVERVIEW_HITS);
  const legendY = 8;
  const queryY = 52;
  const firstHitY = queryY + 40;
  const rowHeight = 9;
  const height = firstHitY + Math.max(1, shown.length) * rowHeight + 8;
  const figure = svg("svg", {
    viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-label": `Graphical overview of ${shown.length} hits on the query`,
  });
  const keyWidth = 110;
  figure.append(svg("text", { x: left, y: legendY + 10, class: "legend-title" }, "Bit score"));
  SCORE_CLASSES.forEach((score, i) => {
    const keyX = left + 70 + i * keyWidth;
    figure.append(
      svg("rect", { x: keyX, y: legendY, width: 28, height: 12, fill: score.colour }),
      svg("text", { x: keyX + 34, y: legendY + 10, class: "legend" }, score.label));
  });
  figure.append(svg("rect", { x: left, y: queryY - 14, width: span, height: 10, class: "query-bar" }),
    svg("text", { x: left + span / 2, y: queryY - 17, class: "axis-title", "text-anchor": "middle" }, "Query"));
  const step = niceStep(length);
  for (let tick = 0; tick <= length; tick += step) {
    const position = Math.max(1, tick);
    figure.append(
      svg("line", { x1: x(position), x2: x(position), y1: queryY - 4, y2: queryY + 2, class: "tick" }),
      svg("text", { x: x(position), y: queryY + 14, class: "tick-label", "text-anchor": "middle" },
        String(position)));
  }
  shown.forEach((row, i) => {
    const y = firstHitY + i * rowHeight;
    const group = svg("g", { class: "hit", "data-rank": row.rank });
    const ends = row.hit.hsps.flatMap((h) => [h.query_from, h.query_to]);
    group.append(svg("title", {}, `${row.subject} ${row.description}\nbit score ${row.bitScore}, `
      + `e-value ${formatEvalue(row.evalue)}, ${row.hit.hsps.length} HSP(s)`));
    group.append(svg("line", { x1: x(Math.min(...ends)), x2: x(Math.max(...ends) + 1), y1: y + 3,
      y2: y + 3, class: "hit-line" }));
    for (const hsp of row.hit.hsps) {
      const from = Math.min(hsp.query_from, hsp.query_to);
      const to = Math.max(hsp.query_from, hsp.query_to);
      group.append(svg("rect", { x: x(from), y, width: Math.max(1, x(to + 1) - x(from)), height: 6,
        fill: scoreClass(hsp.bit_score).colour, class: "hsp" }));
    }
    group.addEventListener("click", () => selectHit(row.rank, true));
    figure.append(group);
  });
  if (!shown.length) {
    figure.append(svg("text", { x: left, y: firstHitY + 6, class: "legend" },
      search.message || "No hits found"));
  }
  const caption = el("figcaption", {}, rows.length > shown.length
    ? `Graphical overview: the best ${shown.length} of ${integer.format(rows.length)} hits`
    : "Graphical overview");
  $("overview").replaceChildren(caption, figure);
}

function sortedRows() {
  const column = COLUMNS.find((c) => c.key === state.sort.key);
  const direction = state.sort.descending ? -1 : 1;
  return [...hitRows(state.query)].sort((a, b) => {
    const [p, q] = [a[column.key], b[column.key]];
    const order = column.numeric ? p - q : p.localeCompare(q);
    return order * direction || a.rank - b.rank;
  });
}

function drawTable() {
  const rows = sortedRows();
  const header = el("tr", {}, ...COLUMNS.map((column) => {
    const active = state.sort.key === column.key;
    const arrow = active ? (state.sort.descending ? " ▼" : " ▲") : "";
    const button = el("button", { type: "button", "data-sort": column.key }, column.label + arrow);
    button.addEventListener("click", () => sortBy(column));
    const cell = el("th", { class: column.numeric ? "num" : "", scope: "col" }, button);
    cell.setAttribute("aria-sort", active ? (state.sort.descending ? "descending" : "ascending") : "none");
    return cell;
  }));
  $("hits").tHead.replaceChildren(header);
  const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
  state.page = Math.min(state.page, pages - 1);
  const start = state.page * PAGE_SIZE;
  const page = rows.slice(start, start + PAGE_SIZE);
  $("hits").tBodies[0].replaceChildren(...page.map((row) => {
    const subject = el("button", { type: "button", class: "link" }, row.subject);
    subject.addEventListener("click", () => selectHit(row.rank, true));
    const pick = el("input", { type: "checkbox", class: "pick", "aria-label": `Tick ${row.subject}` });
    pick.checked = state.picked.has(row.subject);
    pick.addEventListener("change", () => {
      if (pick.checked) state.picked.add(row.subject);
      else state.picked.delete(row.subject);
      showPicked();
    });
    const line = el("tr", { "data-rank": row.rank },
      el("td", { class: "num" }, pick, String(row.rank)),
      el("td", { class: "mono" }, subject),
      el("td", {}, row.description),
      el("td", { class: "num" }, `${row.identity.toFixed(1)} %`),
      el("td", { class: "num" }, `${Math.round(row.coverage)} %`),
      el("td", { class: "num" }, formatEvalue(row.evalue)),
      el("td", { class: "num" }, row.bitScore.toFixed(1)));
    if (row.rank === state.selected) line.classList.add("selected");
    return line;
  }));
  $("pager").hidden = rows.length <= PAGE_SIZE;
  setText("page-label", rows.length
    ? `Hits ${start + 1}–${start + page.length} of ${integer.format(rows.length)}` : "");
  $("page-prev").disabled = state.page === 0;
  $("page-next").disabled = state.page >= pages - 1;
}

// The FASTA of the ticked hits' subjects, whole or their aligned regions (hits.fasta).
function showPicked() {
  const ids = [...state.picked];
  $("picked").hidden = !ids.length;
  if (!ids.length) return;
  const id = state.job.id;
  const links = [["whole sequences", ""], ["aligned regions", "&region=aligned"]].map(([label, extra]) => {
    const href = `${API}/jobs/${id}/hits.fasta?subjects=${encodeURIComponent(ids.join(","))}${extra}&wait=60`;
    const link = el("a", { href, download: `${id}-hits.fasta`, "data-region": extra ? "aligned" : "whole" }, label);
    link.addEventListener("click", (event) => {
      if (!state.key) return;
      event.preventDefault();
      downloadWithKey(href, `${id}-hits.fasta`);
    });
    return link;
  });
  const clear = el("button", { type: "button", class: "quiet" }, "clear");
  clear.addEventListener("click", () => { state.picked.clear(); showPicked(); drawTable(); });
  $("picked").replaceChildren(`FASTA of the ${ids.length} ticked ${ids.length === 1 ? "hit" : "hits"}: `,
    links[0], " · ", links[1], " ", clear);
}

function sortBy(column) {
  state.sort = state.sort.key === column.key
    ? { key: column.key, descending: !state.sort.descending }
    : { key: column.key, descending: column.descending };
  state.page = 0;
  drawTable();
}

function selectHit(rank, scroll) {
  state.selected = rank;
  const position = sortedRows().findIndex((row) => row.rank === rank);
  state.page = Math.floor(position / PAGE_SIZE);
  drawTable();
  drawAlignment();
  if (scroll) $("alignment").scrollIntoView({ behavior: "smooth", block: "start" });
}

// The pairwise alignment lines of one HSP, numbered like BLAST's text report.
function alignmentLines(hsp) {
  const sides = [
    { label: "Query", seq: hsp.qseq, from: hsp.query_from, to: hsp.query_to },
    { label: "Sbjct", seq: hsp.hseq, from: hsp.hit_from, to: hsp.hit_to },
  ].map((side) => {
    const letters = side.seq.replace(/-/g, "").length;
    const direction = side.to >= side.from ? 1 : -1;
    const step = Math.max(1, Math.round((Math.abs(side.to - side.from) + 1) / Math.max(1, letters)));
    return { ...side, direction, step, next: side.from };
  });
  const digits = String(Math.max(hsp.query_from, hsp.query_to, hsp.hit_from, hsp.hit_to)).length;
  const lines = [];
  for (let offset = 0; offset < hsp.qseq.length; offset += ALIGNMENT_WIDTH) {
    const block = sides.map((side) => {
      const chunk = side.seq.slice(offset, offset + ALIGNMENT_WIDTH);
      const letters = chunk.replace(/-/g, "").length;
      const start = side.next;
      const end = letters ? start + side.direction * (letters * side.step - 1) : start;
      if (letters) side.next = end + side.direction;
      return `${side.label}  ${String(start).padEnd(digits)}  ${chunk}  ${end}`;
    });
    const middle = (hsp.midline || "").slice(offset, offset + ALIGNMENT_WIDTH);
    lines.push(block[0], `${" ".repeat(7 + digits + 2)}${middle}`, block[1], "");
  }
  return lines.join("\n");
}

function drawAlignment() {
  const section = $("alignment");
  const row = hitRows(state.query).find((r) => r.rank === state.selected);
  if (!row) {
    section.replaceChildren();
    return;
  }
  const parts = [
    el("h3", {}, "Alignments of ", el("span", { class: "mono" }, row.subject)),
    el("p", { class: "description" }, `${row.description} · length ${integer.format(row.hit.len)}`),
  ];
  row.hit.hsps.forEach((hsp, i) => {
    const gaps = hsp.gaps || 0;
    const strands = hsp.query_strand ? ` · strand ${hsp.query_strand}/${hsp.hit_strand}` : "";
    const frames = hsp.query_frame || hsp.hit_frame
      ? ` · frame ${hsp.query_frame ?? "–"}/${hsp.hit_frame ?? "–"}` : "";
    parts.push(
      el("h4", {}, `HSP ${i + 1}: ${hsp.bit_score.toFixed(1)} bits (${hsp.score}), `
        + `e-value ${formatEvalue(hsp.evalue)}`),
      el("p", { class: "hsp-stats" }, `Identities ${hsp.identity}/${hsp.align_len} `
        + `(${Math.round((100 * hsp.identity) / hsp.align_len)} %) · gaps ${gaps}/${hsp.align_len} `
        + `(${Math.round((100 * gaps) / hsp.align_len)} %)${strands}${frames}`),
      el("pre", { class: "pairwise" }, alignmentLines(hsp)));
  });
  section.replaceChildren(...parts);
}

// Start

function bind() {
  $("submit-form").addEventListener("submit", submitForm);
  $("query-file").addEventListener("change", () => readFile("query"));
  $("subject-file").addEventListener("change", () => readFile("subject"));
  $("field-database").addEventListener("change", databasesChanged);
  $("field-program").addEventListener("change", programChanged);
  $("job-cancel").addEventListener("click", cancelJob);
  $("target-database").addEventListener("change", targetChanged);
  $("target-subject").addEventListener("change", targetChanged);
  $("query-select").addEventListener("change", (e) => goToQuery(Number(e.target.value)));
  $("query-prev").addEventListener("click", () => goToQuery(state.query - 1));
  $("query-next").addEventListener("click", () => goToQuery(state.query + 1));
  $("page-prev").addEventListener("click", () => { state.page -= 1; drawTable(); });
  $("page-next").addEventListener("click", () => { state.page += 1; drawTable(); });
  $("change-key").addEventListener("click", async () => {
    if (await askForKey("Enter the function key to use on this page.")) start();
  });
  window.addEventListener("hashchange", route);
}

async function start() {
  showStatus("Loading…");
  try {
    const [config, databases] = await Promise.all([apiJson("/ui/config"), apiJson("/databases")]);
    state.config = config;
    state.databases = databases.databases;
    state.maxDatabases = Number.isInteger(databases.max_per_search) ? databases.max_per_search : 1;
  } catch (error) {
    showStatus(error.message, true);
    return;
  }
  if (!$("options").childElementCount) buildOptions();
  fillPrograms();
  showStatus("");
  document.body.dataset.ready = "true";
  refreshJobs();
  route();
}

state.key = takeKeyFromUrl();
bind();
start();

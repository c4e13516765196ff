// Dance analysis web page: plain JS, no framework, no build step.
// Also a working example of the HTTP API; every call goes through `api()` or `uploadVideo()`.
//
// The API lives at the page's origin by default. A page served elsewhere can point at it
// with `?api=https://api.example.com` (the API must list that origin in CORS_ORIGINS).
'use strict';

const API = (new URLSearchParams(location.search).get('api') || window.DANCE_API_BASE || '').replace(/\/+$/, '');
const FINAL = new Set(['succeeded', 'failed', 'canceled']);
const MAX_STREAMS = 4; // browsers allow ~6 connections per origin over HTTP/1.1: leave room for the rest
const POLL_MS = 10000; // job list refresh (new jobs from elsewhere, jobs without a stream)
const PAGE_SIZE = 20;

const STAGE_WORDS = {
  queued: 'Waiting in the queue', fetching: 'Fetching the video', probing: 'Reading the video',
  listening: 'Finding the beats', analyzing: 'Finding poses', aligning: 'Aligning the two dancers',
  rendering: 'Drawing the video', exporting: 'Writing results', uploading: 'Saving results', done: 'Done',
};
// A comparison's `mirror` option, in a dancer's words.
const MIRROR_WORDS = { auto: 'facing: found out', on: 'facing: mirrored', off: 'facing: same way' };
const JOINT_COLORS = ['#4f46e5', '#e11d48', '#059669', '#d97706', '#0891b2', '#7c3aed', '#65a30d', '#db2777', '#475569', '#ea580c'];
const DANCER_COLORS = ['#f59e0b', '#06b6d4', '#ec4899', '#84cc16', '#8b5cf6', '#ef4444'];

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key.startsWith('aria-') || key.startsWith('data-') || key === 'role' || key === 'scope') node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
};

// ---------------------------------------------------------------- the API ---------
//
// Keys: when `GET /` says `"auth": "keys"`, every call carries `Authorization: Bearer <key>`.
// The key is asked for once, checked with `GET /me` and kept in this browser's localStorage;
// it never goes into a URL (those end up in logs and history) and is never logged. What cannot
// send a header gets a link that carries its own short-lived permission instead: the event
// stream (`POST /jobs/{id}/events/token`) and the result files (the job view's `results`).

class ApiError extends Error {
  /** An error from the API's envelope {"error": {"code", "message", "details"}}, or a network failure. */
  constructor(status, error, retryAfter = null) {
    super(error?.message || (status ? `The server answered with status ${status}.` : 'Could not reach the server. Check the connection and try again.'));
    this.status = status;
    this.code = error?.code || (status ? `HTTP_${status}` : 'NETWORK_ERROR');
    this.details = error?.details || {};
    // Seconds to wait before trying again (429): the Retry-After header, else the envelope's details.
    const wait = Number(retryAfter ?? this.details.retry_after_seconds);
    this.retryAfter = Number.isFinite(wait) && wait > 0 ? wait : null;
  }
}

const KEY_STORE = `dance-analysis.api-key:${API || location.origin}`;
const session = {
  mode: null, // 'keys' or 'open' (from GET /), null while unknown
  key: null, // the key in use (keys mode)
  me: null, // GET /me: {auth, key_id, name, admin}
  ready: false, // the page may call the API (a checked key, or an open API)
};

const storedKey = () => { try { return localStorage.getItem(KEY_STORE); } catch { return null; } };
function storeKey(key) {
  try { if (key) localStorage.setItem(KEY_STORE, key); else localStorage.removeItem(KEY_STORE); } catch { /* private mode: memory only */ }
}

/** Request headers for the API: JSON, and the key when there is one (`key` overrides the session's). */
function apiHeaders(key = session.key, extra = {}) {
  const headers = { Accept: 'application/json', ...extra };
  if (key) headers.Authorization = `Bearer ${key}`;
  return headers;
}

/** A 401 for the key in use: forget it and ask again, with the server's message. */
function rejected(error, key) {
  if (error.status === 401 && key === session.key) askForKey(error.message);
}

async function api(path, { key = session.key, headers = {}, ...options } = {}) {
  let response;
  try {
    response = await fetch(API + path, { ...options, headers: apiHeaders(key, headers) });
  } catch {
    throw new ApiError(0, null);
  }
  if (response.status === 204) return null;
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  if (!response.ok) {
    const error = new ApiError(response.status, body?.error, response.headers.get('Retry-After'));
    rejected(error, key);
    throw error;
  }
  return body;
}

/**
 * POST /analyze as multipart (fields `profile`, then `file`), reporting upload progress. With
 * `reference` ({job_id, mirror}), the fields `reference_job_id` and `mirror` ask for a comparison
 * with that analysis once this one ends (the answer then names it: `comparison_job_id`).
 */
function uploadVideo(file, profile, onProgress, reference = null) {
  const key = session.key;
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', API + '/analyze');
    for (const [name, value] of Object.entries(apiHeaders(key))) xhr.setRequestHeader(name, value);
    xhr.responseType = 'json';
    xhr.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener('load', () => {
      if (xhr.status === 202) { resolve(xhr.response); return; }
      const error = new ApiError(xhr.status, xhr.response?.error, xhr.getResponseHeader('Retry-After'));
      rejected(error, key);
      reject(error);
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, null)));
    xhr.addEventListener('abort', () => reject(new ApiError(0, { code: 'ABORTED', message: 'The upload was stopped.' })));
    const form = new FormData();
    form.append('profile', profile); // before the file: the server reads the form as it streams
    if (reference) {
      form.append('reference_job_id', reference.job_id);
      form.append('mirror', reference.mirror);
    }
    form.append('file', file, file.name);
    xhr.send(form);
  });
}

// ---------------------------------------------------------------- formatting ------

const pct = (x) => `${Math.round((x || 0) * 100)} %`;
const num = (x, digits = 1) => (x == null || Number.isNaN(x) ? '–' : Number(x).toFixed(digits));
const label = (name) => name.replace(/_/g, ' ');
/** Seconds as m:ss.s, the way a dancer reads a video's time. */
function clock(t) {
  const total = Math.max(t || 0, 0);
  const minutes = Math.floor(total / 60);
  const seconds = total - minutes * 60;
  return `${minutes}:${seconds.toFixed(1).padStart(4, '0')}`;
}
const ms = (x) => `${Math.round(Math.abs(x))} ms`;
const signedMs = (x) => `${x < 0 ? '−' : '+'}${ms(x)}`;
function bytes(n) {
  if (!n) return '0 B';
  const units = ['B', 'KB', 'MB', 'GB'];
  const i = Math.min(Math.floor(Math.log(n) / Math.log(1024)), units.length - 1);
  return `${(n / 1024 ** i).toFixed(i ? 1 : 0)} ${units[i]}`;
}
function when(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay ? date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' }) : date.toLocaleString();
}
function stageText(job) {
  if (job.status === 'succeeded') return 'Finished';
  if (job.status === 'failed') return 'Stopped by an error';
  if (job.status === 'canceled') return 'Canceled';
  // A job whose worker was lost runs again: say so, so a progress bar going back to 0 is not a mystery.
  const attempt = job.attempts > 1 || (job.status === 'queued' && job.retry_reason)
    ? ` · attempt ${job.attempts + (job.status === 'queued' ? 1 : 0)} of ${job.max_attempts}` : '';
  if (job.status === 'queued') return STAGE_WORDS.queued + attempt;
  const words = job.stage === 'queued' ? 'Starting' : STAGE_WORDS[job.stage] || job.stage;
  const frames = job.frames_total ? ` · ${job.frames_done}/${job.frames_total}` : '';
  return `${words} · ${pct(job.progress)}${frames}${attempt}`;
}

function showBanner(text) {
  const banner = $('#banner');
  banner.textContent = text || '';
  banner.hidden = !text;
}
function setMessage(node, text, kind = '') {
  node.textContent = text || '';
  node.className = `message ${kind}`;
}
function waitText(seconds) {
  if (seconds < 90) return `${Math.ceil(seconds)} s`;
  const minutes = Math.round(seconds / 60);
  return `${minutes} minute${minutes > 1 ? 's' : ''}`;
}
function errorText(error) {
  const text = error.code && error.code !== 'NETWORK_ERROR' ? `${error.message} (${error.code})` : error.message;
  return error.retryAfter ? `${text} Try again in ${waitText(error.retryAfter)}.` : text;
}
/** A banner for a failed call, unless it was a 401: the key form says that one. */
function showFailure(prefix, error) {
  if (error.status !== 401) showBanner(`${prefix}: ${errorText(error)}`);
}

// ---------------------------------------------------------------- service ---------

/** GET /: the mode badge, the version and whether calls need a key. Null when the API is not reachable. */
async function loadService() {
  const badge = $('#mode-badge');
  $('#docs-link').href = `${API || '..'}/docs`;
  try {
    const info = await api('/', { key: null });
    badge.textContent = info.mode === 'mock' ? 'Mock analysis' : 'Real analysis';
    badge.title = info.mode === 'mock'
      ? 'Synthetic dancers on your video\'s timeline: for trying the app and frontend work, no models run.'
      : 'Pose models run on your video.';
    badge.className = `badge ${info.mode}`;
    $('#service-version').textContent = `v${info.version}`;
    showBanner('');
    return info;
  } catch (error) {
    badge.textContent = 'offline';
    badge.className = 'badge down';
    showBanner(`The analysis service is not reachable${API ? ` at ${API}` : ''}: ${error.message}`);
    return null;
  }
}

// ---------------------------------------------------------------- the key ---------

/** Show the key form (the rest of the page waits behind it), with why it is asked for. */
function askForKey(message = '') {
  const wasReady = session.ready;
  session.mode = 'keys';
  session.key = null;
  session.me = null;
  session.ready = false;
  storeKey(null);
  if (wasReady) resetJobs(); // the list, streams and results belonged to the key just dropped
  showKeyStatus();
  for (const id of ['#upload-card', '#jobs-card']) $(id).hidden = true;
  $('#key-card').hidden = false;
  $('#key-button').disabled = false;
  setMessage($('#key-message'), message, message ? 'error' : '');
  const input = $('#key-input');
  input.setAttribute('aria-invalid', String(Boolean(message)));
  input.focus();
  input.select();
}

/** The key form's submit: check the key with GET /me before keeping it. */
async function submitKey(event) {
  event.preventDefault();
  const input = $('#key-input');
  const message = $('#key-message');
  const key = input.value.trim();
  if (!key) {
    setMessage(message, 'Paste the API key the operator gave you.', 'error');
    input.focus();
    return;
  }
  $('#key-button').disabled = true;
  setMessage(message, 'Checking the key…');
  try {
    const me = await api('/me', { key });
    input.value = '';
    input.setAttribute('aria-invalid', 'false');
    setMessage(message, '');
    useKey(key, me);
    $('#file-input').focus();
  } catch (error) {
    setMessage(message, error.status === 401 ? error.message : `Could not check the key: ${errorText(error)}`, 'error');
    input.setAttribute('aria-invalid', String(error.status === 401));
    input.focus();
    input.select();
  } finally {
    $('#key-button').disabled = false;
  }
}

/** Start using a checked key (or, with key null, an open API). */
function useKey(key, me) {
  session.key = key;
  session.me = me;
  if (key) storeKey(key);
  $('#key-card').hidden = true;
  for (const id of ['#upload-card', '#jobs-card']) $(id).hidden = false;
  showKeyStatus();
  const first = !session.ready;
  session.ready = true;
  if (first) {
    refreshJobs().then(openFromHash);
    references.refreshSoon(); // the upload form's references: older jobs too, not only the list's page
  }
}

function showKeyStatus() {
  const box = $('#key-status');
  const me = session.me;
  box.hidden = !(session.key && me);
  if (box.hidden) return;
  $('#key-name').textContent = me.name || me.key_id;
  $('#key-name').title = `key id ${me.key_id}`;
  $('#key-role').textContent = me.admin ? 'admin: sees every job' : 'sees its own jobs';
}

function forgetKey() {
  askForKey('');
  setMessage($('#key-message'), 'The key was forgotten in this browser. Paste a key to go on.');
}

function setupKey() {
  $('#key-form').addEventListener('submit', submitKey);
  $('#key-forget').addEventListener('click', forgetKey);
}

/** Ask for nothing on an open API; else use the stored key once GET /me accepts it, or ask for one. */
async function signIn(info) {
  session.mode = info ? (info.auth === 'keys' ? 'keys' : 'open') : null;
  if (session.mode === 'open') { useKey(null, null); return; }
  const key = storedKey();
  if (!key) {
    if (session.mode === 'keys') askForKey('');
    return; // the service is not reachable: the banner says so
  }
  try {
    useKey(key, await api('/me', { key }));
  } catch (error) {
    if (error.status === 401) askForKey(`The key kept in this browser was refused: ${error.message}`);
    else showBanner(`Could not check the API key: ${errorText(error)}`);
  }
}

// ---------------------------------------------------------------- upload ----------

const upload = { file: null, busy: false };

function chooseFile(file) {
  if (!file) return;
  upload.file = file;
  $('#file-label').textContent = `${file.name} (${bytes(file.size)})`;
  $('#dropzone').classList.add('chosen');
  $('#upload-button').disabled = upload.busy;
  setMessage($('#upload-message'), file.type && !file.type.startsWith('video/')
    ? 'This does not look like a video; the server will check it.' : '');
}

function setUploadProgress(fraction) {
  const bar = $('#upload-progress');
  bar.value = fraction;
  bar.setAttribute('aria-valuetext', pct(fraction));
  $('#upload-percent').textContent = pct(fraction);
}

async function startUpload(event) {
  event.preventDefault();
  if (!upload.file || upload.busy) return;
  const profile = new FormData($('#upload-form')).get('profile') || 'fast';
  const referenceId = $('#reference-select').value;
  const reference = referenceId ? { job_id: referenceId, mirror: $('#upload-mirror').value } : null;
  const message = $('#upload-message');
  upload.busy = true;
  $('#upload-button').disabled = true;
  $('#upload-progress-box').hidden = false;
  setUploadProgress(0);
  setMessage(message, `Uploading ${upload.file.name}…`);
  try {
    const accepted = await uploadVideo(upload.file, profile, (fraction) => {
      setUploadProgress(fraction);
      if (fraction >= 1) setMessage(message, 'Upload complete; the server is storing the video…');
    }, reference);
    setUploadProgress(1);
    setMessage(message, accepted.comparison_job_id
      ? 'Uploaded. The analysis is queued, and the comparison with the reference runs once it ends: follow both in the job list.'
      : 'Uploaded. The analysis is queued: follow it in the job list.', 'ok');
    // The comparison first, so the analysis it waits for ends up on top, above it.
    for (const id of [accepted.comparison_job_id, accepted.job_id]) {
      const job = id ? await api(`/jobs/${id}`).catch(() => null) : null;
      if (job) upsertJob(job, { top: true });
    }
    refreshJobs();
  } catch (error) {
    setMessage(message, `The upload failed: ${errorText(error)}`, 'error');
  } finally {
    upload.busy = false;
    $('#upload-button').disabled = !upload.file;
  }
}

function setupUpload() {
  const input = $('#file-input');
  const zone = $('#dropzone');
  input.addEventListener('change', () => chooseFile(input.files[0]));
  for (const name of ['dragenter', 'dragover']) {
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add('over'); });
  }
  for (const name of ['dragleave', 'drop']) {
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.remove('over'); });
  }
  zone.addEventListener('drop', (event) => chooseFile(event.dataTransfer.files[0]));
  // Dropping a file anywhere else must not navigate away from the page.
  window.addEventListener('dragover', (event) => event.preventDefault());
  window.addEventListener('drop', (event) => event.preventDefault());
  $('#upload-form').addEventListener('submit', startUpload);
  $('#reference-select').addEventListener('change', () => { $('#upload-mirror-row').hidden = !$('#reference-select').value; });
}

// ---------------------------------------------------------------- job list --------

const jobs = new Map(); // job_id -> {job, node}
const streams = new Map(); // job_id -> {source: EventSource | null, failures}
const unstreamable = new Set(); // jobs whose stream kept failing: the list refresh polls them
let listLimit = PAGE_SIZE;
let openJobId = null;

async function refreshJobs() {
  if (!session.ready) return;
  try {
    const page = await api(`/jobs?limit=${listLimit}`);
    const seen = new Set();
    page.jobs.forEach((job) => { seen.add(job.job_id); upsertJob(job); });
    for (const id of [...jobs.keys()]) if (!seen.has(id)) removeJob(id);
    orderJobs(page.jobs.map((job) => job.job_id));
    $('#jobs-empty').hidden = page.total > 0;
    $('#jobs-pager').hidden = page.total <= page.jobs.length;
    showBanner('');
  } catch (error) {
    showFailure('Could not load the job list', error);
  }
}

function orderJobs(ids) {
  const list = $('#jobs');
  ids.forEach((id) => { const entry = jobs.get(id); if (entry) list.append(entry.node); });
}

function upsertJob(job, { top = false } = {}) {
  let entry = jobs.get(job.job_id);
  if (!entry) {
    const node = $('#job-template').content.firstElementChild.cloneNode(true);
    node.dataset.jobId = job.job_id;
    $('.open', node).addEventListener('click', () => openResults(job.job_id));
    $('.compare', node).addEventListener('click', () => openCompareDialog(job.job_id));
    $('.cancel', node).addEventListener('click', () => cancelJob(job.job_id));
    $('.delete', node).addEventListener('click', () => deleteJob(job.job_id));
    entry = { job, node };
    jobs.set(job.job_id, entry);
    if (top) $('#jobs').prepend(node); else $('#jobs').append(node);
    $('#jobs-empty').hidden = true;
  }
  const before = entry.job;
  entry.job = job;
  renderJob(entry);
  watchJob(job);
  linkComparison();
  // A new possible reference: the upload form's list of references follows.
  if (isAnalysis(job) && job.status === 'succeeded' && (before === job || before.status !== 'succeeded')) references.refreshSoon();
  if (job.job_id === openJobId) updateOpenJob(job);
}

function renderJob({ job, node }) {
  node.dataset.status = job.status;
  node.classList.toggle('selected', job.job_id === openJobId);
  $('.job-name', node).textContent = job.filename || job.job_id;
  $('.job-name', node).title = job.filename;
  const status = $('.status', node);
  status.textContent = job.status;
  status.className = `status ${job.status}`;
  const comparison = !isAnalysis(job);
  node.dataset.kind = comparison ? 'comparison' : 'analysis';
  $('.kind', node).hidden = !comparison;
  const video = job.video ? ` · ${job.video.width}×${job.video.height}, ${num(job.video.duration, 1)} s` : '';
  const follows = job.comparison_job_id ? ' · then compared with a reference' : '';
  $('.job-meta', node).textContent = comparison
    ? `${when(job.created_at)} · comparison · ${MIRROR_WORDS[job.comparison?.mirror] || MIRROR_WORDS.auto}`
    : `${when(job.created_at)} · ${job.profile} · ${bytes(job.size_bytes)}${video}${follows}`;
  const bar = $('progress', node);
  bar.value = job.status === 'succeeded' ? 1 : job.progress;
  bar.setAttribute('aria-label', `Progress of ${job.filename || job.job_id}`);
  bar.setAttribute('aria-valuetext', `${stageText(job)}`);
  $('.job-stage', node).textContent = stageText(job);
  const error = $('.job-error', node);
  error.hidden = !job.error;
  if (job.error) {
    $('.job-error-message', node).textContent = job.error.message;
    $('.job-error-code', node).textContent = job.error.code;
  }
  $('.open', node).hidden = job.status !== 'succeeded';
  $('.open', node).textContent = comparison ? 'View comparison' : 'View results';
  $('.compare', node).hidden = comparison || job.status !== 'succeeded';
  $('.cancel', node).hidden = FINAL.has(job.status);
  $('.delete', node).hidden = job.status === 'running';
}

function removeJob(jobId) {
  const entry = jobs.get(jobId);
  unwatchJob(jobId);
  unstreamable.delete(jobId);
  if (!entry) return;
  entry.node.remove();
  jobs.delete(jobId);
  if (isAnalysis(entry.job) && entry.job.status === 'succeeded') references.refreshSoon();
  if (jobId === openJobId) closeResults();
  $('#jobs-empty').hidden = jobs.size > 0;
}

/** Every job of the list goes (another key's list is not ours to show): streams, results, rows. */
function resetJobs() {
  for (const id of [...jobs.keys()]) removeJob(id);
  unstreamable.clear();
  references.clear();
  closeCompareDialog();
  closeResults();
  $('#jobs-empty').hidden = true;
  $('#jobs-pager').hidden = true;
  listLimit = PAGE_SIZE;
}

/**
 * Follow an unfinished job over Server-Sent Events. `EventSource` cannot send the key, so each
 * connection starts with `POST /jobs/{id}/events/token` (with the key), which answers a link
 * carrying a short-lived token of its own: `new EventSource(events_url)`. The browser reconnects
 * on its own with the same link while the token is valid; once the stream has failed for good
 * (CLOSED: e.g. a 401 for a token that expired meanwhile), ask for a new link and connect again.
 */
function watchJob(job) {
  if (FINAL.has(job.status)) { unwatchJob(job.job_id); return; }
  if (streams.has(job.job_id) || unstreamable.has(job.job_id)) return;
  if (streams.size >= MAX_STREAMS || !window.EventSource) return; // the list refresh polls it instead
  const stream = { source: null, failures: 0 };
  streams.set(job.job_id, stream);
  connectStream(job.job_id, stream);
}

const STREAM_RETRIES = 3; // failed connections in a row before the job is left to the list refresh

async function connectStream(jobId, stream) {
  if (streams.get(jobId) !== stream) return; // unwatched meanwhile (and maybe watched again: another stream)
  let link;
  try {
    link = await api(`/jobs/${jobId}/events/token`, { method: 'POST' });
  } catch (error) {
    if (streams.get(jobId) !== stream) return;
    streams.delete(jobId); // polled instead (a 401 has already brought the key form back)
    if (error.status === 404) removeJob(jobId);
    else if (error.status !== 401) unstreamable.add(jobId);
    return;
  }
  if (streams.get(jobId) !== stream) return; // unwatched while the link was on its way
  const source = new EventSource(link.events_url);
  stream.source = source;
  source.onopen = () => { stream.failures = 0; };
  source.onmessage = (event) => upsertJob(JSON.parse(event.data));
  source.addEventListener('deleted', () => removeJob(jobId));
  source.onerror = () => {
    // The server ends the stream after a final status and the EventSource would reconnect: don't.
    const entry = jobs.get(jobId);
    if (entry && FINAL.has(entry.job.status)) { unwatchJob(jobId); return; }
    if (source.readyState !== EventSource.CLOSED) return; // the browser reconnects with the same link
    // Failed for good (a 401 for an expired token, a 404, a 503): a new link, unless it keeps failing.
    source.close();
    stream.source = null;
    stream.failures += 1;
    if (stream.failures > STREAM_RETRIES) {
      streams.delete(jobId);
      unstreamable.add(jobId);
      refreshJobs();
      return;
    }
    setTimeout(() => connectStream(jobId, stream), stream.failures === 1 ? 0 : 2000 * stream.failures);
  };
}

function unwatchJob(jobId) {
  const stream = streams.get(jobId);
  if (!stream) return;
  streams.delete(jobId);
  if (stream.source) stream.source.close();
}

async function cancelJob(jobId) {
  try {
    upsertJob(await api(`/jobs/${jobId}/cancel`, { method: 'POST' }));
  } catch (error) {
    showFailure('Could not cancel the job', error);
    refreshJobs();
  }
}

async function deleteJob(jobId) {
  const entry = jobs.get(jobId);
  const name = entry?.job.filename || jobId;
  if (!window.confirm(`Delete the job "${name}" and all its files? This cannot be undone.`)) return;
  try {
    await api(`/jobs/${jobId}`, { method: 'DELETE' });
    removeJob(jobId);
    refreshJobs();
  } catch (error) {
    showFailure('Could not delete the job', error);
  }
}

function setupJobs() {
  $('#refresh-jobs').addEventListener('click', refreshJobs);
  $('#jobs-more').addEventListener('click', () => { listLimit = Math.min(listLimit + PAGE_SIZE, 100); refreshJobs(); });
  setInterval(() => { if (!document.hidden) poll(); }, POLL_MS);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) poll(); });
}

// ---------------------------------------------------------------- references ------

const isAnalysis = (job) => (job.kind || 'analysis') === 'analysis';

/**
 * The caller's succeeded analyses: what a comparison can use as its reference (a comparison is
 * never the input of another). GET /jobs?status=succeeded, refreshed when one appears or goes.
 */
const references = {
  list: [],
  timer: 0,
  async load() {
    if (!session.ready) return [];
    const page = await api('/jobs?status=succeeded&limit=100');
    this.list = page.jobs.filter(isAnalysis);
    fillReferenceSelect();
    return this.list;
  },
  refreshSoon() {
    clearTimeout(this.timer);
    if (session.ready) this.timer = setTimeout(() => this.load().catch(() => {}), 300);
  },
  clear() {
    clearTimeout(this.timer);
    this.list = [];
    fillReferenceSelect();
  },
};

function referenceText(job) {
  const length = job.video ? ` · ${num(job.video.duration, 1)} s` : '';
  return `${job.filename || job.job_id} · ${when(job.created_at)}${length}`;
}

/** The upload form's "compare with a reference" choices; the one chosen stays chosen while it is there. */
function fillReferenceSelect() {
  const select = $('#reference-select');
  const chosen = select.value;
  select.replaceChildren(el('option', { value: '', text: references.list.length ? 'No comparison' : 'No comparison (no finished analysis yet)' }),
    ...references.list.map((job) => el('option', { value: job.job_id, text: referenceText(job) })));
  select.value = references.list.some((job) => job.job_id === chosen) ? chosen : '';
  $('#upload-mirror-row').hidden = !select.value;
}

// ---------------------------------------------------------------- compare with… ---

const compareDialog = { attemptId: null };

// Each analysis's dancers, longest in view first (from its metrics.json), for "Compare with…": in a group
// video the dancer picks who they are, and who in the reference they follow. Cached per job (results
// never change); a failed load is forgotten so the next opening tries again.
const dancerLists = new Map();

function dancersOf(jobId) {
  if (!dancerLists.has(jobId)) {
    const loading = api(`/jobs/${jobId}/results/metrics.json`).then((metrics) => (metrics.dancers || [])
      .map((d) => ({ trackId: d.track_id, seconds: d.summary?.time_in_view_s ?? 0 }))
      .sort((a, b) => b.seconds - a.seconds || a.trackId - b.trackId));
    loading.catch(() => dancerLists.delete(jobId));
    dancerLists.set(jobId, loading);
  }
  return dancerLists.get(jobId);
}

/** Fill a dancer choice with `jobId`'s dancers; the first (seen longest) is the API's own default. Marks the
 *  select `data-job` once filled, so a late answer for a job no longer chosen is dropped. */
async function fillDancers(select, jobId) {
  select.dataset.job = '';
  select.disabled = true;
  select.replaceChildren(el('option', { value: '', text: 'Loading the dancers…' }));
  let dancers = null;
  try {
    dancers = await dancersOf(jobId);
  } catch {
    dancers = null; // the comparison still works: the API takes the dancer seen longest
  }
  if (select.dataset.pending !== jobId) return;
  if (!dancers || !dancers.length) {
    select.replaceChildren(el('option', { value: '', text: dancers ? 'No dancer found' : 'The dancer seen longest' }));
  } else {
    select.replaceChildren(...dancers.map((d, k) => el('option', {
      value: String(d.trackId),
      text: `Dancer ${d.trackId} · in view ${Math.round(d.seconds)} s${k === 0 && dancers.length > 1 ? ' (longest)' : ''}`,
    })));
    select.disabled = dancers.length < 2;
  }
  select.dataset.job = jobId;
}

function chooseDancersOf(select, jobId) {
  select.dataset.pending = jobId || '';
  if (jobId) return fillDancers(select, jobId);
  select.replaceChildren();
  select.disabled = true;
  select.dataset.job = '';
  return Promise.resolve();
}

/** "Compare with…" on a succeeded analysis: it is the attempt; the dancer picks the reference. */
async function openCompareDialog(attemptId) {
  const dialog = $('#compare-dialog');
  const message = $('#compare-dialog-message');
  const attempt = jobs.get(attemptId)?.job;
  compareDialog.attemptId = attemptId;
  $('#compare-dialog-attempt').textContent = `Compare “${attempt?.filename || attemptId}” with the performance you want to look like `
    + '(e.g. the teacher’s). The two are aligned in time first, so a slower or faster tempo does not count against you.';
  const select = $('#compare-reference');
  select.replaceChildren(el('option', { value: '', text: 'Loading your analyses…' }));
  select.disabled = true;
  $('#compare-start').disabled = true;
  setMessage(message, '');
  chooseDancersOf($('#compare-attempt-dancer'), attemptId);
  chooseDancersOf($('#compare-reference-dancer'), null);
  if (!dialog.open) dialog.showModal();
  try {
    const list = (await references.load()).filter((job) => job.job_id !== attemptId);
    if (compareDialog.attemptId !== attemptId || !dialog.open) return;
    select.replaceChildren(...list.map((job) => el('option', { value: job.job_id, text: referenceText(job) })));
    select.disabled = !list.length;
    $('#compare-start').disabled = !list.length;
    chooseDancersOf($('#compare-reference-dancer'), select.value);
    if (list.length) select.focus();
    else setMessage(message, 'There is no other finished analysis yet: upload and analyse the reference video first.', 'error');
  } catch (error) {
    setMessage(message, `Could not list your analyses: ${errorText(error)}`, 'error');
  }
}

/** POST /compare, then the new comparison job on top of the list, followed like any job. */
async function startComparison(event) {
  event.preventDefault();
  const attemptId = compareDialog.attemptId;
  const form = new FormData($('#compare-form'));
  const referenceId = form.get('reference_job_id');
  if (!attemptId || !referenceId) return;
  const message = $('#compare-dialog-message');
  $('#compare-start').disabled = true;
  setMessage(message, 'Starting the comparison…');
  try {
    const accepted = await api('/compare', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({
        reference_job_id: referenceId,
        attempt_job_id: attemptId,
        mirror: form.get('mirror') || 'auto',
        ...trackChoice('reference_track_id', $('#compare-reference-dancer'), referenceId),
        ...trackChoice('attempt_track_id', $('#compare-attempt-dancer'), attemptId),
      }),
    });
    closeCompareDialog();
    const job = await api(`/jobs/${accepted.job_id}`).catch(() => null);
    if (job) upsertJob(job, { top: true });
    refreshJobs();
  } catch (error) {
    setMessage(message, `The comparison could not start: ${errorText(error)}`, 'error');
  } finally {
    $('#compare-start').disabled = !$('#compare-reference').value;
  }
}

/** `{field: track id}` when the dancer choice is filled for `jobId`, else nothing (the API's default).
 *  A disabled select is left out of FormData, so the value is read from the select itself. */
function trackChoice(field, select, jobId) {
  return select.dataset.job === jobId && select.value ? { [field]: Number(select.value) } : {};
}

function closeCompareDialog() {
  const dialog = $('#compare-dialog');
  compareDialog.attemptId = null;
  if (dialog.open) dialog.close();
}

function setupCompareDialog() {
  $('#compare-form').addEventListener('submit', startComparison);
  $('#compare-cancel').addEventListener('click', closeCompareDialog);
  $('#compare-reference').addEventListener('change', (event) => chooseDancersOf($('#compare-reference-dancer'), event.target.value));
  $('#compare-dialog').addEventListener('close', () => { compareDialog.attemptId = null; });
}

// ---------------------------------------------------------------- results ---------

const viewer = { charts: [], raf: 0, metrics: null, beats: null, videoRetried: false };

/**
 * The results of a succeeded job: an analysis here, a comparison in its own view (openComparison).
 * The job view's `results` links carry their own permission (presigned storage URLs, or API links
 * with a signed `?token=` for that one file), so the `<video>` and the download links need no
 * header; they expire, so a fresh view is read first. The JSON files come through the API with
 * the key, like every other call.
 */
async function openResults(jobId) {
  const message = $('#results-message');
  let job;
  try {
    job = await api(`/jobs/${jobId}`);
  } catch (error) {
    showFailure('Could not open the job', error);
    return;
  }
  if (jobs.has(jobId)) upsertJob(job);
  closeResults();
  openJobId = jobId;
  history.replaceState(null, '', `#job=${jobId}`);
  jobs.forEach((e) => e.node.classList.toggle('selected', e.job.job_id === jobId));
  if (!isAnalysis(job)) { openComparison(job); return; }
  $('#results').hidden = false;
  linkComparison();
  $('#results-title').textContent = `Results: ${job.filename || jobId}`;
  const v = job.video;
  $('#results-meta').textContent = v
    ? `${v.width}×${v.height} · ${num(v.fps, 2)} fps · ${num(v.duration, 2)} s · profile ${job.profile} · ${job.mode} analysis`
    : `profile ${job.profile} · ${job.mode} analysis`;

  showDownloads(job);

  // Storage and the API both serve the video with Range support, so the player can seek.
  const player = $('#player');
  viewer.videoRetried = false;
  player.src = job.results['annotated.mp4'];
  player.load();

  setMessage(message, 'Loading the metrics…');
  try {
    const [metrics, beats] = await Promise.all([
      api(`/jobs/${jobId}/results/metrics.json`),
      // An analysis from before beats.json has none; a failure to load it spoils only the beat marks.
      job.results['beats.json'] ? api(`/jobs/${jobId}/results/beats.json`).catch((error) => ({ failed: error })) : null,
    ]);
    if (openJobId !== jobId) return;
    viewer.metrics = metrics;
    viewer.beats = beats;
    renderMusic(metrics, beats);
    renderTogether(metrics);
    renderDancers(metrics, beatTimes(beats));
    setMessage(message, metrics.dancers.length
      ? `${metrics.dancers.length} dancer${metrics.dancers.length > 1 ? 's' : ''} found. Click a chart to jump the video there.`
      : 'No dancer was found in this video.');
  } catch (error) {
    setMessage(message, `Could not load the metrics: ${errorText(error)}`, 'error');
  }
  $('#results').scrollIntoView({ behavior: 'smooth', block: 'start' });
}

/** An analysis uploaded with a reference: once its comparison has succeeded, a way to it from the results. */
function linkComparison() {
  const button = $('#results-comparison');
  const open = openJobId ? jobs.get(openJobId)?.job : null;
  const follower = open && isAnalysis(open) && open.comparison_job_id ? jobs.get(open.comparison_job_id)?.job : null;
  button.hidden = $('#results').hidden || follower?.status !== 'succeeded';
  button.dataset.jobId = follower?.job_id || '';
}

function showDownloads(job, list = '#downloads') {
  $(list).replaceChildren(...Object.entries(job.results).map(([name, url]) => el('li', {},
    el('a', { href: url, download: `${job.job_id}-${name}`, text: name }))));
}

function updateOpenJob(job) {
  if (job.status !== 'succeeded') { closeResults(); return; } // e.g. deleted and re-created: nothing to show
  // Links expire: keep the download links as fresh as the job list.
  const list = isAnalysis(job) ? '#downloads' : '#compare-downloads';
  const links = [...$(list).querySelectorAll('a')].map((a) => a.getAttribute('href'));
  if (links.join('\n') !== Object.values(job.results).join('\n')) showDownloads(job, list);
}

/** The video's link has expired (or storage hiccupped): once, carry on with a fresh one from where it was. */
async function reloadVideo(jobId) {
  const player = $('#player');
  const at = player.currentTime || 0;
  try {
    const job = await api(`/jobs/${jobId}`);
    if (openJobId !== jobId || !job.results['annotated.mp4']) return false;
    player.src = job.results['annotated.mp4'];
    player.addEventListener('loadedmetadata', () => { player.currentTime = Math.min(at, player.duration || at); }, { once: true });
    player.load();
    showDownloads(job);
    return true;
  } catch {
    return false;
  }
}

function closeResults() {
  openJobId = null;
  viewer.metrics = null;
  viewer.beats = null;
  viewer.charts = [];
  cancelAnimationFrame(viewer.raf);
  const player = $('#player');
  player.pause();
  player.removeAttribute('src');
  player.load();
  $('#dancers').replaceChildren();
  $('#downloads').replaceChildren();
  $('#together-moments').replaceChildren();
  $('#music').hidden = true;
  $('#together').hidden = true;
  $('#results').hidden = true;
  $('#results-comparison').hidden = true;
  closeComparison();
  jobs.forEach((e) => e.node.classList.remove('selected'));
  if (location.hash.startsWith('#job=')) history.replaceState(null, '', location.pathname + location.search);
}

/** Scroll `node` into view if it is not (on a phone, the list of moments sits below the video). */
function inView(node) {
  const rect = node.getBoundingClientRect();
  if (rect.top < 0 || rect.bottom > window.innerHeight) node.scrollIntoView({ behavior: 'smooth', block: 'nearest' });
}

/** Move the annotated video to `t` seconds (the charts' cursors follow it). */
function seekPlayer(t) {
  const player = $('#player');
  player.currentTime = Number.isFinite(player.duration) ? Math.min(t, player.duration) : t;
  drawCursors();
}

/** The beat times of beats.json, or none (no file, skipped, not loaded). */
const beatTimes = (beats) => (beats && !beats.failed && !beats.skipped && Array.isArray(beats.beats) ? beats.beats : []);
const reason = (text) => String(text).replace(/[.\s]+$/, '');

/** The music line: the tempo and how many beats are marked, or why there are none (a quiet note). */
function renderMusic(metrics, beats) {
  const box = $('#music');
  const text = $('#music-text');
  const music = metrics.music; // metrics.json 1.1; an older analysis has neither this nor beats.json
  box.hidden = !beats && !music;
  if (box.hidden) return;
  let quiet = true;
  if (beats?.failed) {
    text.textContent = `The beats could not be loaded: ${errorText(beats.failed)}`;
  } else if ((beats || music).skipped) {
    text.textContent = `No beat marks: ${reason((beats || music).skipped)}.`;
  } else {
    const tempo = (beats || music).tempo_bpm;
    const count = beats ? beatTimes(beats).length : music.beat_count;
    text.textContent = `${tempo != null ? `${Math.round(tempo)} beats per minute` : 'No steady tempo'} · `
      + `${count} beat${count === 1 ? '' : 's'}, marked under each dancer's chart.`;
    quiet = false;
  }
  text.classList.toggle('quiet', quiet);
}

/** The group: when its dancers are least together, each moment a button that seeks the video there. */
function renderTogether(metrics) {
  const box = $('#together');
  const text = $('#together-text');
  const list = $('#together-moments');
  const sync = metrics.synchrony;
  box.hidden = !sync;
  list.replaceChildren();
  if (!sync) return;
  text.classList.toggle('quiet', Boolean(sync.skipped));
  if (sync.skipped) {
    text.textContent = `Not measured: ${reason(sync.skipped)}.`;
    return;
  }
  const moments = sync.least_together || [];
  text.textContent = moments.length
    ? 'Least together at these moments; choose one to watch it:'
    : 'The dancers stay together throughout.';
  list.replaceChildren(...moments.map((m) => {
    const button = el('button', { type: 'button', class: 'moment', 'data-start': String(m.start) },
      el('strong', { class: 'num', text: `${clock(m.start)}–${clock(m.end)}` }),
      el('span', { text: `${num(m.spread_deg, 0)}° apart` }),
      m.furthest_track_id != null ? el('span', { text: `Dancer ${m.furthest_track_id} furthest off` }) : null);
    button.addEventListener('click', () => { seekPlayer(m.start); inView($('#player')); });
    return el('li', {}, button);
  }));
}

/** "Hits 42 ms late on average; 78 % of accents on the beat (within ±70 ms: 7 of 9)." */
function onBeatText(onBeat, music) {
  if (!onBeat) {
    if (music?.skipped) return `Not measured: ${reason(music.skipped)}.`;
    return music && !music.beat_count ? 'Not measured: no beats were found in the music.' : 'Not measured: too few clear accents to time.';
  }
  const mean = onBeat.offset_ms?.mean;
  let lead;
  if (mean == null) lead = 'No accent to time';
  else if (onBeat.tendency === 'early') lead = `Hits ${ms(mean)} early on average`;
  else if (onBeat.tendency === 'late') lead = `Hits ${ms(mean)} late on average`;
  else lead = `Right on the beat on average (${signedMs(mean)})`;
  const tolerance = onBeat.tolerance_ms;
  const offsets = onBeat.offsets_ms || [];
  const onCount = offsets.length ? offsets.filter((o) => Math.abs(o) <= tolerance).length : Math.round(onBeat.on_beat_share * onBeat.accents);
  const spread = onBeat.offset_ms?.std != null ? ` Timing varies by ±${ms(onBeat.offset_ms.std)}.` : '';
  const only = onBeat.on_beat_share < 0.5 ? 'only ' : ''; // on the beat on average, yet mostly off it: say so
  return `${lead}; ${only}${pct(onBeat.on_beat_share)} of accents on the beat (within ±${Math.round(tolerance)} ms: ${onCount} of ${onBeat.accents}).${spread}`;
}

/** "42 ms behind the group; moves 86 % like it." */
function inSyncText(sync, trackId) {
  if (sync.skipped) return `Not measured: ${reason(sync.skipped)}.`;
  const entry = (sync.dancers || []).find((d) => d.track_id === trackId);
  if (!entry) return 'Not measured: in view with the others for too short a time.';
  const like = entry.similarity != null ? `moves ${pct(entry.similarity)} like the group` : '';
  let lag;
  if (entry.lag_ms == null) lag = 'No lag measured: seen with the others for under 2 s';
  else if (Math.abs(entry.lag_ms) < 20) lag = `With the group (${signedMs(entry.lag_ms)})`;
  else lag = `${ms(entry.lag_ms)} ${entry.lag_ms > 0 ? 'behind' : 'ahead of'} the group`;
  return like ? `${lag}; ${like}.` : `${lag}.`;
}

function renderDancers(metrics, beats = []) {
  const container = $('#dancers');
  const duration = metrics.video.duration || 0;
  viewer.charts = [];
  const nodes = metrics.dancers.map((dancer, i) => {
    const s = dancer.summary;
    const color = DANCER_COLORS[i % DANCER_COLORS.length];
    const joints = Object.keys(dancer.series.angles);
    const canvas = el('canvas', {
      class: 'chart', role: 'img',
      'aria-label': `Joint angles of dancer ${dancer.track_id} over time, in degrees; the vertical line follows the video`,
    });
    const chart = new AngleChart(canvas, dancer.series, joints, duration, beats);
    viewer.charts.push(chart);
    const legend = el('ul', { class: 'legend', 'aria-label': 'Show or hide a joint' }, ...joints.map((joint, j) => {
      const button = el('button', { type: 'button', 'aria-pressed': 'true' },
        el('span', { class: 'swatch', style: `background:${JOINT_COLORS[j % JOINT_COLORS.length]}` }), label(joint));
      button.addEventListener('click', () => {
        const on = button.getAttribute('aria-pressed') !== 'true';
        button.setAttribute('aria-pressed', String(on));
        chart.setVisible(joint, on);
      });
      return el('li', {}, button);
    }));
    const swatch = el('span', { class: 'swatch' });
    swatch.style.background = color;
    const timing = [];
    if (metrics.music) timing.push(['On the beat', 'on-beat', onBeatText(dancer.on_beat, metrics.music)]);
    if (metrics.synchrony) timing.push(['In sync', 'in-sync', inSyncText(metrics.synchrony, dancer.track_id)]);
    return el('article', { class: 'dancer', 'data-track-id': String(dancer.track_id) },
      el('div', { class: 'dancer-head' },
        el('h3', {}, swatch, `Dancer ${dancer.track_id}`),
        el('p', { class: 'dancer-facts' },
          el('span', {}, 'In view ', el('b', { text: `${num(s.time_in_view_s, 1)} s` }), ` (${num(s.first_time, 1)}–${num(s.last_time, 1)} s, ${s.frames_in_view} frames)`),
          el('span', { title: 'Mean over frames of the summed squared keypoint speeds, in (body heights per second)²' },
            'Movement energy ', el('b', { text: num(s.movement_energy, 2) })))),
      timing.length ? el('dl', { class: 'timing' }, ...timing.flatMap(([term, cls, text]) => [
        el('dt', { text: term }), el('dd', { class: cls, text })])) : null,
      canvas,
      beats.length || dancer.on_beat ? beatStrip(chart, beats, dancer.on_beat) : null,
      legend,
      el('div', { class: 'tables' }, anglesTable(s.joint_angles), speedsTable(s.speeds)));
  });
  container.replaceChildren(...nodes);
  viewer.charts.forEach((chart) => chart.resize());
  drawCursors();
}

/**
 * The timeline under a dancer's chart, on the chart's time axis: a thin line per beat, and a dot per
 * accent of the dancer's (green: within the tolerance of a beat; orange: off it). Pointing seeks.
 */
function beatStrip(chart, beats, onBeat) {
  const at = (t) => `${Math.min(Math.max(t / chart.duration, 0), 1) * 100}%`;
  const track = el('div', { class: 'beat-track' });
  track.style.marginLeft = `${chart.pad.left}px`;
  track.style.marginRight = `${chart.pad.right}px`;
  for (const t of beats) {
    const mark = el('span', { class: 'beat-mark' });
    mark.style.left = at(t);
    track.append(mark);
  }
  let onCount = 0;
  (onBeat?.accent_times || []).forEach((t, k) => {
    const offset = onBeat.offsets_ms?.[k];
    const on = offset != null && Math.abs(offset) <= onBeat.tolerance_ms;
    onCount += on ? 1 : 0;
    const dot = el('span', { class: `accent-mark ${on ? 'on' : 'off'}`, title: offset == null ? clock(t) : `${clock(t)}: ${signedMs(offset)}` });
    dot.style.left = at(t);
    track.append(dot);
  });
  const accents = onBeat ? `; ${onBeat.accent_times?.length || 0} accents, ${onCount} on the beat` : '';
  const strip = el('div', {
    class: 'beat-strip', role: 'img',
    'aria-label': `Timeline: ${beats.length} beat${beats.length === 1 ? '' : 's'}${accents}`,
  }, track);
  const seek = (event) => {
    const rect = track.getBoundingClientRect();
    seekPlayer(Math.min(Math.max((event.clientX - rect.left) / rect.width, 0), 1) * chart.duration);
  };
  strip.addEventListener('pointerdown', (event) => { strip.setPointerCapture(event.pointerId); seek(event); });
  strip.addEventListener('pointermove', (event) => { if (event.buttons) seek(event); });
  return strip;
}

function table(caption, headers, rows) {
  return el('table', {},
    el('caption', { text: caption }),
    el('thead', {}, el('tr', {}, ...headers.map((h) => el('th', { scope: 'col', text: h })))),
    el('tbody', {}, ...rows.map((cells) => el('tr', {}, ...cells.map((c, i) => (i ? el('td', { text: c }) : el('th', { scope: 'row', text: c })))))));
}
const anglesTable = (angles) => table('Joint angles (degrees)', ['Joint', 'Mean', 'Min', 'Max', 'Std'],
  Object.entries(angles).map(([joint, a]) => [label(joint), num(a.mean), num(a.min), num(a.max), num(a.std)]));
const speedsTable = (speeds) => table('Speeds', ['Keypoint', 'Mean px/s', 'Max px/s', 'Body h/s'],
  Object.entries(speeds).map(([name, v]) => [label(name), num(v.mean_px_s, 0), num(v.max_px_s, 0), num(v.mean_body_heights_s, 2)]));

// ---------------------------------------------------------------- the charts ------

/**
 * A value over a video's time on a <canvas>: what does not move is drawn once to an offscreen
 * layer, a cursor on top follows the video; pointing at it calls `onSeek(t)`.
 */
class TimeChart {
  constructor(canvas, duration, onSeek) {
    this.canvas = canvas;
    this.duration = Math.max(duration, 0.001);
    this.onSeek = onSeek;
    this.layer = document.createElement('canvas');
    this.pad = { left: 38, right: 10, top: 10, bottom: 22 };
    canvas.addEventListener('pointerdown', (event) => { canvas.setPointerCapture(event.pointerId); this.seek(event); });
    canvas.addEventListener('pointermove', (event) => { if (event.buttons) this.seek(event); });
  }

  seek(event) {
    const rect = this.canvas.getBoundingClientRect();
    const plotWidth = rect.width - this.pad.left - this.pad.right;
    const t = Math.min(Math.max((event.clientX - rect.left - this.pad.left) / plotWidth, 0), 1) * this.duration;
    this.onSeek(t);
    this.draw(t);
  }

  resize() {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(this.canvas.clientWidth, 200), height = Math.max(this.canvas.clientHeight, 120);
    this.ratio = ratio;
    this.width = width;
    this.height = height;
    for (const c of [this.canvas, this.layer]) { c.width = Math.round(width * ratio); c.height = Math.round(height * ratio); }
    this.drawLayer();
  }

  x(t) { return this.pad.left + (t / this.duration) * (this.width - this.pad.left - this.pad.right); }

  /** White ground, horizontal lines at `ticks` ([value, text]) through `this.y`, and "nice" seconds. */
  drawGrid(ctx, ticks) {
    ctx.setTransform(this.ratio, 0, 0, this.ratio, 0, 0);
    ctx.clearRect(0, 0, this.width, this.height);
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, this.width, this.height);
    ctx.font = '11px system-ui, sans-serif';
    ctx.lineWidth = 1;
    ctx.strokeStyle = '#e6e8f0';
    ctx.fillStyle = '#6b7280';
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (const [value, text] of ticks) {
      const y = Math.round(this.y(value)) + 0.5;
      ctx.beginPath(); ctx.moveTo(this.pad.left, y); ctx.lineTo(this.width - this.pad.right, y); ctx.stroke();
      ctx.fillText(text, this.pad.left - 5, y);
    }
    const maxTicks = Math.max(2, Math.floor((this.width - this.pad.left - this.pad.right) / 55));
    const step = [0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300].find((s) => this.duration / s <= maxTicks) || 600;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (let t = 0; t <= this.duration + 1e-9; t += step) {
      const x = Math.round(this.x(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, this.pad.top); ctx.lineTo(x, this.height - this.pad.bottom); ctx.stroke();
      const text = `${Number(t.toFixed(1))} s`;
      // The last label ends at the edge rather than past it.
      const overhang = x + ctx.measureText(text).width / 2 - (this.width - 1);
      ctx.fillText(text, overhang > 0 ? x - overhang : x, this.height - this.pad.bottom + 5);
    }
  }

  /** A line through `values` at `times`; a null value or a step longer than `gap` lifts the pen. */
  drawLine(ctx, times, values, gap) {
    ctx.beginPath();
    let pen = false;
    for (let i = 0; i < times.length; i++) {
      const v = values[i];
      if (v == null || (i && times[i] - times[i - 1] > gap)) pen = false;
      if (v == null) continue;
      if (pen) ctx.lineTo(this.x(times[i]), this.y(v)); else ctx.moveTo(this.x(times[i]), this.y(v));
      pen = true;
    }
    ctx.stroke();
  }

  /** The static layer plus a cursor line at `t` seconds; returns the cursor's x. */
  drawCursor(t) {
    const ctx = this.canvas.getContext('2d');
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.drawImage(this.layer, 0, 0);
    ctx.setTransform(this.ratio, 0, 0, this.ratio, 0, 0);
    const x = this.x(Math.min(Math.max(t, 0), this.duration));
    ctx.strokeStyle = '#111827';
    ctx.lineWidth = 1.5;
    ctx.beginPath(); ctx.moveTo(x, this.pad.top); ctx.lineTo(x, this.height - this.pad.bottom); ctx.stroke();
    return x;
  }

  /** Index of the sample of `times` nearest `t` when within `gap` of it, else -1. */
  static nearest(times, t, gap) {
    if (!times.length) return -1;
    let lo = 0, hi = times.length - 1;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (times[mid] < t) lo = mid + 1; else hi = mid; }
    if (lo > 0 && Math.abs(times[lo - 1] - t) < Math.abs(times[lo] - t)) lo -= 1;
    return Math.abs(times[lo] - t) <= gap ? lo : -1;
  }
}

/** Median step of `times`, times 2.5: a longer step means the dancer was out of view. */
function gapOf(times) {
  const steps = times.slice(1).map((t, i) => t - times[i]).sort((a, b) => a - b);
  return (steps.length ? steps[Math.floor(steps.length / 2)] : 0.1) * 2.5;
}

/** One dancer's joint angles over time, with the music's beats as faint lines when they are far enough apart. */
class AngleChart extends TimeChart {
  constructor(canvas, series, joints, duration, beats = []) {
    const times = series.time;
    super(canvas, Math.max(duration, times.length ? times[times.length - 1] : 0), seekPlayer);
    this.series = series;
    this.joints = joints;
    this.beats = beats;
    this.visible = new Set(joints);
    this.gap = gapOf(times);
  }

  setVisible(joint, on) {
    if (on) this.visible.add(joint); else this.visible.delete(joint);
    this.drawLayer();
    this.draw($('#player').currentTime);
  }

  y(deg) { return this.pad.top + (1 - deg / 180) * (this.height - this.pad.top - this.pad.bottom); }

  drawLayer() {
    const ctx = this.layer.getContext('2d');
    this.drawGrid(ctx, [0, 45, 90, 135, 180].map((deg) => [deg, `${deg}°`]));
    if (this.beats.length > 1 && this.x(this.beats[1]) - this.x(this.beats[0]) >= 6) {
      ctx.strokeStyle = 'rgba(79, 70, 229, 0.16)';
      ctx.lineWidth = 1;
      for (const t of this.beats) {
        const x = Math.round(this.x(t)) + 0.5;
        ctx.beginPath(); ctx.moveTo(x, this.pad.top); ctx.lineTo(x, this.height - this.pad.bottom); ctx.stroke();
      }
    }
    ctx.lineWidth = 1.6;
    ctx.lineJoin = 'round';
    this.joints.forEach((joint, j) => {
      if (!this.visible.has(joint)) return;
      ctx.strokeStyle = JOINT_COLORS[j % JOINT_COLORS.length];
      this.drawLine(ctx, this.series.time, this.series.angles[joint], this.gap);
    });
  }

  /** The cursor at `t` seconds and each joint's value there. */
  draw(t) {
    const x = this.drawCursor(t);
    const ctx = this.canvas.getContext('2d');
    const i = TimeChart.nearest(this.series.time, t, this.gap);
    if (i < 0) return;
    this.joints.forEach((joint, j) => {
      const v = this.series.angles[joint][i];
      if (v == null || !this.visible.has(joint)) return;
      ctx.fillStyle = JOINT_COLORS[j % JOINT_COLORS.length];
      ctx.beginPath(); ctx.arc(x, this.y(v), 3.2, 0, 2 * Math.PI); ctx.fill();
    });
  }
}

/** A comparison's similarity (0..1) over the reference's time, its worst moments shaded and numbered. */
class SimilarityChart extends TimeChart {
  constructor(canvas, series, moments, duration, onSeek) {
    const times = series.time;
    super(canvas, Math.max(duration || 0, times.length ? times[times.length - 1] : 0), onSeek);
    this.series = series;
    this.moments = moments;
    this.gap = gapOf(times);
  }

  y(v) { return this.pad.top + (1 - v) * (this.height - this.pad.top - this.pad.bottom); }

  drawLayer() {
    const ctx = this.layer.getContext('2d');
    this.drawGrid(ctx, [0, 0.25, 0.5, 0.75, 1].map((v) => [v, `${v * 100}%`]));
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    ctx.font = '600 11px system-ui, sans-serif';
    this.moments.forEach((m, k) => {
      const x0 = this.x(m.start), x1 = Math.max(this.x(m.end), x0 + 2);
      ctx.fillStyle = 'rgba(196, 43, 58, 0.14)';
      ctx.fillRect(x0, this.pad.top, x1 - x0, this.height - this.pad.top - this.pad.bottom);
      ctx.fillStyle = '#c42b3a';
      ctx.fillText(String(k + 1), (x0 + x1) / 2, this.pad.top + 2);
    });
    ctx.strokeStyle = '#4f46e5';
    ctx.lineWidth = 1.8;
    ctx.lineJoin = 'round';
    this.drawLine(ctx, this.series.time, this.series.similarity, this.gap);
  }

  draw(t) {
    const x = this.drawCursor(t);
    const i = TimeChart.nearest(this.series.time, t, this.gap);
    const v = i < 0 ? null : this.series.similarity[i];
    if (v == null) return;
    const ctx = this.canvas.getContext('2d');
    ctx.fillStyle = '#4f46e5';
    ctx.beginPath(); ctx.arc(x, this.y(v), 3.5, 0, 2 * Math.PI); ctx.fill();
  }
}

function drawCursors() {
  const t = $('#player').currentTime || 0;
  viewer.charts.forEach((chart) => chart.draw(t));
}

function setupPlayer() {
  const player = $('#player');
  const loop = () => {
    drawCursors();
    if (!player.paused && !player.ended) viewer.raf = requestAnimationFrame(loop);
  };
  player.addEventListener('play', () => { cancelAnimationFrame(viewer.raf); viewer.raf = requestAnimationFrame(loop); });
  for (const name of ['timeupdate', 'seeked', 'seeking', 'loadedmetadata', 'pause']) player.addEventListener(name, drawCursors);
  player.addEventListener('error', async () => {
    const jobId = openJobId;
    if (!jobId || !player.getAttribute('src')) return;
    if (!viewer.videoRetried) {
      viewer.videoRetried = true;
      if (await reloadVideo(jobId)) return;
    }
    if (openJobId !== jobId) return;
    setMessage($('#results-message'), 'The annotated video could not be played in this browser; download it below.', 'error');
  });
  let resizeTimer = 0;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      viewer.charts.forEach((chart) => chart.resize());
      drawCursors();
      if (comparison.chart) { comparison.chart.resize(); comparison.chart.draw(compareMaster().currentTime || 0); }
    }, 100);
  });
  $('#results-close').addEventListener('click', closeResults);
  $('#results-comparison').addEventListener('click', (event) => openResults(event.currentTarget.dataset.jobId));
}

// ---------------------------------------------------------------- comparison ------
//
// A comparison job's view. comparison.mp4 is the pair side by side (reference left, attempt right),
// on the reference's timeline, with the reference's music. The other way to watch: the two
// analyses' own annotated videos, the reference playing and the attempt following it, its time
// read off comparison.json's `series.attempt_time` (what the attempt does when the reference does
// what it does at `series.time`). One clock throughout: the reference's seconds.

const comparison = {
  jobId: null,
  doc: null,
  view: 'side', // 'side': comparison.mp4; 'pair': the two annotated videos in step
  chart: null,
  raf: 0,
  refTimes: [], // series.time and series.attempt_time where both are known
  attemptTimes: [],
  pin: null, // {t, attemptT}: a worst moment's own attempt time, for the seek it asked for
  attemptName: '',
  sources: {}, // video id -> {jobId, name}: where a fresh link comes from when one expires
  retried: new Set(),
};

const comparePlayers = () => ({ side: $('#compare-player'), ref: $('#reference-player'), att: $('#attempt-player') });
const compareMaster = () => (comparison.view === 'pair' ? $('#reference-player') : $('#compare-player'));
const hasSource = (video) => Boolean(video.getAttribute('src'));
const within = (video, t) => Math.max(0, Number.isFinite(video.duration) ? Math.min(t, video.duration) : t);

/** The attempt's time matching the reference's `t`: linear between known pairs, at the same pace outside them. */
function attemptAt(t) {
  const ref = comparison.refTimes, att = comparison.attemptTimes;
  const n = ref.length;
  if (!n) return t;
  if (t <= ref[0]) return Math.max(0, att[0] + (t - ref[0]));
  if (t >= ref[n - 1]) return att[n - 1] + (t - ref[n - 1]);
  let lo = 0, hi = n - 1;
  while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (ref[mid] <= t) lo = mid; else hi = mid; }
  const span = ref[hi] - ref[lo];
  return span > 0 ? att[lo] + ((t - ref[lo]) / span) * (att[hi] - att[lo]) : att[lo];
}

/**
 * How fast the attempt moves per second of the reference around `t`, over half a second (an alignment
 * goes in steps): 1 at the same pace, 0 where the attempt holds while the reference goes on.
 */
const attemptPace = (t) => Math.min(Math.max((attemptAt(t + 0.25) - attemptAt(t - 0.25)) / 0.5, 0), 4);

async function openComparison(job) {
  const jobId = job.job_id;
  const message = $('#compare-message');
  comparison.jobId = jobId;
  comparison.retried = new Set();
  $('#compare').hidden = false;
  $('#compare-title').textContent = `Comparison: ${job.filename || jobId}`;
  $('#compare-meta').textContent = '';
  showDownloads(job, '#compare-downloads');
  setCompareView('side', { carry: false });
  const { side } = comparePlayers();
  side.src = job.results['comparison.mp4'];
  side.load();
  comparison.sources = { 'compare-player': { jobId, name: 'comparison.mp4' } };

  setMessage(message, 'Loading the comparison…');
  const inputs = job.comparison || {};
  const [doc, reference, attempt] = await Promise.all([
    api(`/jobs/${jobId}/results/comparison.json`).catch((error) => ({ failed: error })),
    // The two analyses, for their annotated videos; either may have been deleted since.
    inputs.reference_job_id ? api(`/jobs/${inputs.reference_job_id}`).catch(() => null) : null,
    inputs.attempt_job_id ? api(`/jobs/${inputs.attempt_job_id}`).catch(() => null) : null,
  ]);
  if (comparison.jobId !== jobId) return;
  loadPair(reference, attempt);
  if (doc.failed) {
    setMessage(message, `Could not load the comparison: ${errorText(doc.failed)}`, 'error');
    return;
  }
  renderComparison(doc);
  setMessage(message, doc.worst_moments.length
    ? 'Choose a worst moment, or click the chart, to watch it in every video.'
    : 'Click the chart to watch any moment in every video.');
  $('#compare').scrollIntoView({ behavior: 'smooth', block: 'start' });
}

/** The two original annotated videos, when both analyses are still there. */
function loadPair(reference, attempt) {
  const { ref, att } = comparePlayers();
  for (const [id, job] of [['#open-reference', reference], ['#open-attempt', attempt]]) {
    $(id).hidden = job?.status !== 'succeeded';
    $(id).dataset.jobId = job?.job_id || '';
  }
  const ok = Boolean(reference?.results?.['annotated.mp4'] && attempt?.results?.['annotated.mp4']);
  const radio = $('input[name="compare-view"][value="pair"]');
  radio.disabled = !ok;
  radio.parentElement.classList.toggle('disabled', !ok);
  const note = $('#pair-note');
  note.hidden = ok;
  note.textContent = ok ? '' : 'The two original videos are not available any more (an analysis was deleted): the side-by-side video still shows both.';
  if (!ok) return;
  $('#reference-caption').textContent = `Reference: ${reference.filename || reference.job_id}`;
  comparison.attemptName = attempt.filename || attempt.job_id;
  captionAttempt();
  ref.src = reference.results['annotated.mp4'];
  att.src = attempt.results['annotated.mp4'];
  ref.load();
  att.load();
  comparison.sources['reference-player'] = { jobId: reference.job_id, name: 'annotated.mp4' };
  comparison.sources['attempt-player'] = { jobId: attempt.job_id, name: 'annotated.mp4' };
}

/** The attempt's caption; a mirrored comparison shows the attempt flipped, as comparison.mp4 does. */
function captionAttempt() {
  const mirrored = Boolean(comparison.doc?.mirrored);
  $('#attempt-player').classList.toggle('mirrored', mirrored);
  $('#attempt-caption').textContent = `Attempt: ${comparison.attemptName || ''} (${mirrored ? 'shown mirrored, ' : ''}follows the reference)`;
}

function renderComparison(doc) {
  comparison.doc = doc;
  captionAttempt();
  const series = doc.series;
  comparison.refTimes = [];
  comparison.attemptTimes = [];
  series.time.forEach((t, i) => {
    const a = series.attempt_time?.[i];
    if (t != null && a != null) { comparison.refTimes.push(t); comparison.attemptTimes.push(a); }
  });
  const who = (side) => `${side.filename || side.job_id} (dancer ${side.track_id})`;
  $('#compare-meta').textContent = `Reference: ${who(doc.reference)} · Attempt: ${who(doc.attempt)} · `
    + `${doc.mirrored ? 'compared as a mirror image' : 'compared as filmed'}`;
  $('#compare-score').textContent = pct(doc.score);
  const orientation = $('#compare-orientation');
  if (doc.mirror === 'auto' && doc.other_orientation_score != null) {
    orientation.textContent = `${doc.mirrored ? 'Mirrored' : 'As filmed'} matched better: ${pct(doc.score)}, `
      + `against ${pct(doc.other_orientation_score)} ${doc.mirrored ? 'as filmed' : 'mirrored'}.`;
  } else {
    orientation.textContent = doc.mirrored ? 'Compared as a mirror image, as asked.' : 'Compared as filmed, as asked.';
  }
  const old = $('#similarity-chart'); // a fresh canvas: the last chart's pointer handlers go with the old one
  const canvas = old.cloneNode(false);
  old.replaceWith(canvas);
  comparison.chart = new SimilarityChart(canvas, series, doc.worst_moments, doc.reference.duration,
    (t) => seekCompare(t));
  comparison.chart.resize();
  comparison.chart.draw(compareMaster().currentTime || 0);
  $('#worst-moments').replaceChildren(...doc.worst_moments.map((m) => {
    const button = el('button', {
      type: 'button', class: 'moment', 'data-start': String(m.start), 'data-attempt-start': String(m.attempt_start),
    },
    el('strong', { class: 'num', text: `${clock(m.start)}–${clock(m.end)}` }),
    el('span', { class: 'alike', text: `${pct(m.similarity)} alike` }),
    m.worst_keypoints.length ? el('span', { class: 'off', text: `most off: ${m.worst_keypoints.map(label).join(', ')}` }) : null,
    el('span', { class: 'hint', text: `attempt at ${clock(m.attempt_start)}` }));
    button.addEventListener('click', () => {
      seekCompare(m.start, m.attempt_start);
      inView(comparison.view === 'pair' ? $('#compare-pair') : $('#compare-player'));
    });
    return el('li', {}, button);
  }));
}

/** Every video to the reference's `t` seconds; the attempt to `attemptT`, else to where it matches `t`. */
function seekCompare(t, attemptT = null) {
  const { side, ref, att } = comparePlayers();
  const attemptTime = attemptT ?? attemptAt(t);
  comparison.pin = { t, attemptT: attemptTime };
  for (const video of [side, ref]) if (hasSource(video)) video.currentTime = within(video, t);
  if (hasSource(att)) att.currentTime = within(att, attemptTime);
  comparison.chart?.draw(t);
}

/** The attempt to where the reference is (after it was paused or moved). */
function followReference() {
  const { ref, att } = comparePlayers();
  if (!hasSource(att)) return;
  const t = ref.currentTime;
  const pin = comparison.pin;
  const target = pin && Math.abs(pin.t - t) < 0.02 ? pin.attemptT : attemptAt(t);
  if (Math.abs(att.currentTime - target) > 0.005) att.currentTime = within(att, target);
}

/** While the master plays: the chart's cursor, and in the pair view the attempt kept in step. */
function compareLoop() {
  const { ref, att } = comparePlayers();
  const master = compareMaster();
  const t = master.currentTime;
  comparison.chart?.draw(t);
  if (comparison.view === 'pair' && !ref.paused && hasSource(att) && !att.seeking) {
    const target = attemptAt(t);
    const drift = target - att.currentTime;
    // The attempt's own pace here, a little faster or slower to close the drift.
    const rate = (attemptPace(t) + 3 * drift) * ref.playbackRate;
    if (Math.abs(drift) > 0.3) {
      att.currentTime = within(att, target); // too far behind or ahead to catch up by pace
    } else if (rate < 0.2) {
      if (!att.paused) att.pause(); // the attempt holds a pose here (or is ahead): it waits for the reference
    } else {
      att.playbackRate = Math.min(Math.max(rate, 0.25), 4);
      if (att.paused && !att.ended && target < (att.duration || Infinity)) att.play().catch(() => {});
    }
  }
  if (!master.paused && !master.ended) comparison.raf = requestAnimationFrame(compareLoop);
}

/** Switch between the side-by-side video and the two videos in step, at the same moment. */
function setCompareView(view, { carry = true } = {}) {
  const { side, ref, att } = comparePlayers();
  const t = compareMaster().currentTime || 0;
  for (const video of [side, ref, att]) video.pause();
  comparison.view = view;
  $('#compare-side').hidden = view !== 'side';
  $('#compare-pair').hidden = view !== 'pair';
  $(`input[name="compare-view"][value="${view}"]`).checked = true;
  if (carry) seekCompare(t);
}

function closeComparison() {
  comparison.jobId = null;
  comparison.doc = null;
  comparison.chart = null;
  comparison.pin = null;
  comparison.refTimes = [];
  comparison.attemptTimes = [];
  comparison.sources = {};
  comparison.attemptName = '';
  cancelAnimationFrame(comparison.raf);
  $('#attempt-player').classList.remove('mirrored');
  for (const video of Object.values(comparePlayers())) {
    video.pause();
    video.removeAttribute('src');
    video.load();
  }
  $('#worst-moments').replaceChildren();
  $('#compare-downloads').replaceChildren();
  $('#compare-score').textContent = '–';
  $('#compare-orientation').textContent = '';
  $('#compare').hidden = true;
  $('#open-reference').hidden = true;
  $('#open-attempt').hidden = true;
}

/** A video's link expired (or storage hiccupped): once per video, a fresh link from its job, at the same time. */
async function reloadCompareVideo(video) {
  const jobId = comparison.jobId;
  const source = comparison.sources[video.id];
  if (!jobId || !source || comparison.retried.has(video.id)) return false;
  comparison.retried.add(video.id);
  const at = video.currentTime || 0;
  try {
    const job = await api(`/jobs/${source.jobId}`);
    if (comparison.jobId !== jobId || !job.results[source.name]) return false;
    video.src = job.results[source.name];
    video.addEventListener('loadedmetadata', () => { video.currentTime = within(video, at); }, { once: true });
    video.load();
    if (source.jobId === jobId) showDownloads(job, '#compare-downloads');
    return true;
  } catch {
    return false;
  }
}

function setupComparison() {
  const { side, ref, att } = comparePlayers();
  const startLoop = () => { cancelAnimationFrame(comparison.raf); comparison.raf = requestAnimationFrame(compareLoop); };
  const drawCursor = () => comparison.chart?.draw(compareMaster().currentTime || 0);
  side.addEventListener('play', () => { comparison.pin = null; startLoop(); });
  for (const name of ['timeupdate', 'seeked', 'pause']) side.addEventListener(name, drawCursor);
  ref.addEventListener('play', () => {
    comparison.pin = null;
    startLoop(); // the loop starts the attempt, at its pace (or holds it)
  });
  for (const name of ['pause', 'ended']) {
    ref.addEventListener(name, () => { att.pause(); att.playbackRate = 1; followReference(); drawCursor(); });
  }
  ref.addEventListener('seeking', () => { followReference(); drawCursor(); });
  ref.addEventListener('seeked', drawCursor);
  for (const video of [side, ref, att]) {
    video.addEventListener('error', async () => {
      if (!comparison.jobId || !hasSource(video)) return;
      if (await reloadCompareVideo(video)) return;
      if (comparison.jobId) setMessage($('#compare-message'), 'A video of the comparison could not be played in this browser; download it below.', 'error');
    });
  }
  for (const radio of document.querySelectorAll('input[name="compare-view"]')) {
    radio.addEventListener('change', () => { if (radio.checked) setCompareView(radio.value); });
  }
  $('#compare-close').addEventListener('click', closeResults);
  for (const id of ['#open-reference', '#open-attempt']) {
    $(id).addEventListener('click', (event) => openResults(event.currentTarget.dataset.jobId));
  }
}

// ---------------------------------------------------------------- start -----------

function openFromHash() {
  const match = location.hash.match(/^#job=([0-9a-f]{32})$/);
  if (match && session.ready && openJobId !== match[1]) openResults(match[1]);
}

/** GET /, then the key (or none), then the job list. Run again by the poll while the API was not reachable. */
let booting = null;
function boot() {
  booting ??= loadService().then(signIn).finally(() => { booting = null; });
  return booting;
}

/** Every POLL_MS: the job list, or, while the page could not start (API unreachable), another try. */
function poll() {
  if (session.ready) refreshJobs();
  else if ($('#key-card').hidden) boot();
}

function main() {
  setupKey();
  setupUpload();
  setupJobs();
  setupPlayer();
  setupComparison();
  setupCompareDialog();
  boot();
}

main();

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
  analyzing: 'Finding poses', rendering: 'Drawing the video', exporting: 'Writing results',
  uploading: 'Saving results', done: 'Done',
};
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

/** POST /analyze as multipart (fields `profile`, then `file`), reporting upload progress. */
function uploadVideo(file, profile, onProgress) {
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
    form.append('file', file, file.name);
    xhr.send(form);
  });
}

// ---------------------------------------------------------------- formatting ------

const pct = (x) => `${Math.round((x || 0) * 100)} %`;
const num = (x, digits = 1) => (x == null || Number.isNaN(x) ? '–' : Number(x).toFixed(digits));
const label = (name) => name.replace(/_/g, ' ');
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
  if (first) refreshJobs().then(openFromHash);
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
    });
    setUploadProgress(1);
    setMessage(message, 'Uploaded. The analysis is queued: follow it in the job list.', 'ok');
    const job = await api(`/jobs/${accepted.job_id}`).catch(() => null);
    if (job) upsertJob(job, { top: true });
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
    $('.cancel', node).addEventListener('click', () => cancelJob(job.job_id));
    $('.delete', node).addEventListener('click', () => deleteJob(job.job_id));
    entry = { job, node };
    jobs.set(job.job_id, entry);
    if (top) $('#jobs').prepend(node); else $('#jobs').append(node);
    $('#jobs-empty').hidden = true;
  }
  entry.job = job;
  renderJob(entry);
  watchJob(job);
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
  const video = job.video ? ` · ${job.video.width}×${job.video.height}, ${num(job.video.duration, 1)} s` : '';
  $('.job-meta', node).textContent = `${when(job.created_at)} · ${job.profile} · ${bytes(job.size_bytes)}${video}`;
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
  if (jobId === openJobId) closeResults();
  $('#jobs-empty').hidden = jobs.size > 0;
}

/** Every job of the list goes (another key's list is not ours to show): streams, results, rows. */
function resetJobs() {
  for (const id of [...jobs.keys()]) removeJob(id);
  unstreamable.clear();
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

// ---------------------------------------------------------------- results ---------

const viewer = { charts: [], raf: 0, metrics: null, videoRetried: false };

/**
 * The results of a succeeded job. The job view's `results` links carry their own permission
 * (presigned storage URLs, or API links with a signed `?token=` for that one file), so the
 * `<video>` and the download links need no header; they expire, so a fresh view is read first.
 * metrics.json comes through the API with the key, like every other call.
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
  $('#results').hidden = false;
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
    const metrics = await api(`/jobs/${jobId}/results/metrics.json`);
    if (openJobId !== jobId) return;
    viewer.metrics = metrics;
    renderDancers(metrics);
    setMessage(message, metrics.dancers.length
      ? `${metrics.dancers.length} dancer${metrics.dancers.length > 1 ? 's' : ''} found. Click a chart to jump the video there.`
      : 'No dancer was found in this video.');
  } catch (error) {
    setMessage(message, `Could not load the metrics: ${errorText(error)}`, 'error');
  }
  $('#results').scrollIntoView({ behavior: 'smooth', block: 'start' });
}

function showDownloads(job) {
  $('#downloads').replaceChildren(...Object.entries(job.results).map(([name, url]) => el('li', {},
    el('a', { href: url, download: `${job.job_id}-${name}`, text: name }))));
}

function updateOpenJob(job) {
  if (job.status !== 'succeeded') { closeResults(); return; } // e.g. deleted and re-created: nothing to show
  // Links expire: keep the download links as fresh as the job list.
  const links = [...$('#downloads').querySelectorAll('a')].map((a) => a.getAttribute('href'));
  if (links.join('\n') !== Object.values(job.results).join('\n')) showDownloads(job);
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
  viewer.charts = [];
  cancelAnimationFrame(viewer.raf);
  const player = $('#player');
  player.pause();
  player.removeAttribute('src');
  player.load();
  $('#dancers').replaceChildren();
  $('#downloads').replaceChildren();
  $('#results').hidden = true;
  jobs.forEach((e) => e.node.classList.remove('selected'));
  if (location.hash.startsWith('#job=')) history.replaceState(null, '', location.pathname + location.search);
}

function renderDancers(metrics) {
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
    const chart = new AngleChart(canvas, dancer.series, joints, duration);
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
    return el('article', { class: 'dancer', 'data-track-id': String(dancer.track_id) },
      el('div', { class: 'dancer-head' },
        el('h3', {}, swatch, `Dancer ${dancer.track_id}`),
        el('p', { class: 'dancer-facts' },
          el('span', {}, 'In view ', el('b', { text: `${num(s.time_in_view_s, 1)} s` }), ` (${num(s.first_time, 1)}–${num(s.last_time, 1)} s, ${s.frames_in_view} frames)`),
          el('span', { title: 'Mean over frames of the summed squared keypoint speeds, in (body heights per second)²' },
            'Movement energy ', el('b', { text: num(s.movement_energy, 2) })))),
      canvas, legend,
      el('div', { class: 'tables' }, anglesTable(s.joint_angles), speedsTable(s.speeds)));
  });
  container.replaceChildren(...nodes);
  viewer.charts.forEach((chart) => chart.resize());
  drawCursors();
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

// ---------------------------------------------------------------- the chart -------

/** Joint angles over time on a <canvas>: lines drawn once to an offscreen layer, a cursor on top. */
class AngleChart {
  constructor(canvas, series, joints, duration) {
    this.canvas = canvas;
    this.series = series;
    this.joints = joints;
    this.visible = new Set(joints);
    const times = series.time;
    this.duration = Math.max(duration, times.length ? times[times.length - 1] : 0, 0.001);
    const steps = times.slice(1).map((t, i) => t - times[i]).sort((a, b) => a - b);
    this.gap = (steps.length ? steps[Math.floor(steps.length / 2)] : 0.1) * 2.5; // a longer step: out of view
    this.layer = document.createElement('canvas');
    this.pad = { left: 38, right: 10, top: 10, bottom: 22 };
    canvas.addEventListener('pointerdown', (event) => { canvas.setPointerCapture(event.pointerId); this.seek(event); });
    canvas.addEventListener('pointermove', (event) => { if (event.buttons) this.seek(event); });
  }

  setVisible(joint, on) {
    if (on) this.visible.add(joint); else this.visible.delete(joint);
    this.drawLayer();
    this.draw($('#player').currentTime);
  }

  seek(event) {
    const rect = this.canvas.getBoundingClientRect();
    const plotLeft = this.pad.left, plotWidth = rect.width - this.pad.left - this.pad.right;
    const t = Math.min(Math.max((event.clientX - rect.left - plotLeft) / plotWidth, 0), 1) * this.duration;
    const player = $('#player');
    if (Number.isFinite(player.duration)) player.currentTime = Math.min(t, player.duration);
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
  y(deg) { return this.pad.top + (1 - deg / 180) * (this.height - this.pad.top - this.pad.bottom); }

  drawLayer() {
    const ctx = this.layer.getContext('2d');
    ctx.setTransform(this.ratio, 0, 0, this.ratio, 0, 0);
    ctx.clearRect(0, 0, this.width, this.height);
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, this.width, this.height);
    ctx.font = '11px system-ui, sans-serif';
    ctx.lineWidth = 1;
    // Grid: every 45 degrees, and "nice" seconds.
    ctx.strokeStyle = '#e6e8f0';
    ctx.fillStyle = '#6b7280';
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (let deg = 0; deg <= 180; deg += 45) {
      const y = Math.round(this.y(deg)) + 0.5;
      ctx.beginPath(); ctx.moveTo(this.pad.left, y); ctx.lineTo(this.width - this.pad.right, y); ctx.stroke();
      ctx.fillText(`${deg}°`, this.pad.left - 5, y);
    }
    const maxTicks = Math.max(2, Math.floor((this.width - this.pad.left - this.pad.right) / 55));
    const step = [0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300].find((s) => this.duration / s <= maxTicks) || 600;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (let t = 0; t <= this.duration + 1e-9; t += step) {
      const x = Math.round(this.x(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, this.pad.top); ctx.lineTo(x, this.height - this.pad.bottom); ctx.stroke();
      ctx.fillText(`${Number(t.toFixed(1))} s`, x, this.height - this.pad.bottom + 5);
    }
    // One line per visible joint; a null value or a gap in time breaks the line.
    const times = this.series.time;
    ctx.lineWidth = 1.6;
    ctx.lineJoin = 'round';
    this.joints.forEach((joint, j) => {
      if (!this.visible.has(joint)) return;
      const values = this.series.angles[joint];
      ctx.strokeStyle = JOINT_COLORS[j % JOINT_COLORS.length];
      ctx.beginPath();
      let pen = false;
      for (let i = 0; i < times.length; i++) {
        const v = values[i];
        if (v == null || (i && times[i] - times[i - 1] > this.gap)) pen = false;
        if (v == null) continue;
        if (pen) ctx.lineTo(this.x(times[i]), this.y(v)); else ctx.moveTo(this.x(times[i]), this.y(v));
        pen = true;
      }
      ctx.stroke();
    });
  }

  /** The static layer plus a cursor line at `t` seconds and each joint's value there. */
  draw(t) {
    const ctx = this.canvas.getContext('2d');
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.drawImage(this.layer, 0, 0);
    ctx.setTransform(this.ratio, 0, 0, this.ratio, 0, 0);
    const x = this.x(Math.min(Math.max(t, 0), this.duration));
    ctx.strokeStyle = '#111827';
    ctx.lineWidth = 1.5;
    ctx.beginPath(); ctx.moveTo(x, this.pad.top); ctx.lineTo(x, this.height - this.pad.bottom); ctx.stroke();
    const i = this.indexAt(t);
    if (i < 0) return;
    this.joints.forEach((joint, j) => {
      const v = this.series.angles[joint][i];
      if (v == null || !this.visible.has(joint)) return;
      ctx.fillStyle = JOINT_COLORS[j % JOINT_COLORS.length];
      ctx.beginPath(); ctx.arc(x, this.y(v), 3.2, 0, 2 * Math.PI); ctx.fill();
    });
  }

  /** Index of the sample nearest `t` when the dancer is in view then, else -1. */
  indexAt(t) {
    const times = this.series.time;
    if (!times.length) return -1;
    let lo = 0, hi = times.length - 1;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (times[mid] < t) lo = mid + 1; else hi = mid; }
    if (lo > 0 && Math.abs(times[lo - 1] - t) < Math.abs(times[lo] - t)) lo -= 1;
    return Math.abs(times[lo] - t) <= this.gap ? lo : -1;
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
    resizeTimer = setTimeout(() => { viewer.charts.forEach((chart) => chart.resize()); drawCursors(); }, 100);
  });
  $('#results-close').addEventListener('click', closeResults);
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
  boot();
}

main();

// What every browser flow starts with: its settings from the environment (the Python test passes
// them), and Debian's Chromium headless, without anything that reaches the internet.
import { chromium } from 'playwright-core';

export const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};

// `autoplay`: let videos play without a click (the page's players are checked while playing).
export const launch = ({ autoplay = false } = {}) => chromium.launch({
  executablePath: env('CHROMIUM', '/usr/bin/chromium'),
  headless: true,
  // Playwright gives each launch a fresh temporary --user-data-dir.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run',
    ...(autoplay ? ['--autoplay-policy=no-user-gesture-required'] : [])],
});

// What went wrong on the page, into report.console (errors and warnings), report.pageErrors and
// report.failedRequests. A media element aborts its own range requests while seeking, and closing an
// EventSource aborts it: those are not failures.
export const recordProblems = (page, report) => {
  page.on('console', (msg) => { if (['error', 'warning'].includes(msg.type())) report.console.push(`${msg.type()}: ${msg.text()}`); });
  page.on('pageerror', (error) => report.pageErrors.push(String(error)));
  page.on('requestfailed', (request) => {
    const failure = request.failure()?.errorText || '';
    if (!failure.includes('ERR_ABORTED')) report.failedRequests.push(`${request.method()} ${request.url()}: ${failure}`);
  });
};
